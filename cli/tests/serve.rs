//! `tcodec serve` as a process: TLS, client certificates, the audit log,
//! configuration errors and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine;
use support::server::{Issuer, Keyrings, ServeProcess, curl, curl_post, generate};
use support::{plain_batch, texts};

const CARD: &str = "4111 1111 1111 1111";

fn card_batch() -> String {
    plain_batch(&[&format!("{{\"card\":\"{CARD}\"}}"), "\"Ada Lovelace\""])
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// No plaintext, raw or base64, anywhere in `log`.
fn assert_no_plaintext(log: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{{\"card\":\"{CARD}\"}}"));
    for secret in [CARD, "Ada Lovelace", &b64] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

#[test]
fn https_round_trip_with_an_audit_line_per_request() {
    let keys = Keyrings::new(&["payments"]);
    let certs = tempfile::tempdir().unwrap();
    generate("tls", certs.path());
    let file = |f: &str| certs.path().join(f).display().to_string();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n[log]\nformat = \"json\"\nlevel = \"debug\"\n{}",
        file("server.pem"),
        file("server.key"),
        keys.toml(&[("payments", "")])
    );
    let server = ServeProcess::start(&toml, &[]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let ca = file("ca.pem");

    let mut encode = vec!["--cacert".to_owned(), ca.clone()];
    encode.extend(curl_post(
        &format!("{}/tcodec/encode", server.url),
        "payments",
        &card_batch(),
    ));
    let (status, sealed) = curl(&args(&encode));
    assert_eq!(status, 200, "{sealed}");
    assert!(!sealed.contains("Ada"));

    let mut decode = vec!["--cacert".to_owned(), ca.clone()];
    decode.extend(curl_post(
        &format!("{}/tcodec/decode", server.url),
        "payments",
        &sealed,
    ));
    let (status, plain) = curl(&args(&decode));
    assert_eq!(status, 200, "{plain}");
    assert_eq!(texts(&plain)[1], "\"Ada Lovelace\"");

    // A client that does not trust the certificate does not get through.
    let (status, _) = curl(&args(&curl_post(
        &format!("{}/tcodec/decode", server.url),
        "payments",
        &sealed,
    )));
    assert_eq!(status, 0);
    // Plain HTTP to the TLS port is not answered.
    let http = server.url.replace("https://", "http://");
    let (status, _) = curl(&args(&curl_post(
        &format!("{http}/decode"),
        "payments",
        &sealed,
    )));
    assert_ne!(status, 200);

    let (status, _) = curl(&["--cacert", &ca, &format!("{}/healthz", server.url)]);
    assert_eq!(status, 200);

    // One audit line per codec request, as JSON: who, namespace, endpoint, count.
    let log = server.log_text();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "tcodec::audit" && v["message"] == "codec request")
        .collect();
    assert_eq!(audit.len(), 2, "{log}");
    assert_eq!(audit[0]["endpoint"], "encode");
    assert_eq!(audit[1]["endpoint"], "decode");
    for line in &audit {
        assert_eq!(line["namespace"], "payments");
        assert_eq!(line["payloads"], 2);
        assert_eq!(line["status"], 200);
        assert_eq!(line["user"], "127.0.0.1");
    }
    assert_no_plaintext(&log);
}

#[test]
fn mtls_requires_a_certificate_from_the_client_ca() {
    let keys = Keyrings::new(&["payments"]);
    let certs = tempfile::tempdir().unwrap();
    generate("tls", certs.path());
    let file = |f: &str| certs.path().join(f).display().to_string();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[auth]\nmode = \"mtls\"\n[log]\nformat = \"json\"\n{}",
        file("server.pem"),
        file("server.key"),
        file("ca.pem"),
        keys.toml(&[("payments", "allowed_clients = [\"worker-1\"]")])
    );
    let server = ServeProcess::start(&toml, &[]);
    let url = format!("{}/decode", server.url);
    let call = |client: Option<&str>| {
        let mut a = vec!["--cacert".to_owned(), file("ca.pem")];
        if let Some(name) = client {
            a.extend(["--cert".to_owned(), file(&format!("{name}.pem"))]);
            a.extend(["--key".to_owned(), file(&format!("{name}.key"))]);
        }
        a.extend(curl_post(&url, "payments", &card_batch()));
        curl(&args(&a))
    };
    let (status, body) = call(Some("client"));
    assert_eq!(status, 200, "{body}");
    // No certificate, or one from another CA with the same name: no handshake.
    assert_eq!(call(None).0, 0);
    assert_eq!(call(Some("rogue")).0, 0);
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("\"user\":\"worker-1\"") && l.contains("\"auth\":\"mtls\"")),
        "{log}"
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let keys = Keyrings::new(&["payments"]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("listen = \"0.0.0.0:0\"\n{}", keys.toml(&[("payments", "")])),
            "tls",
        ),
        (
            format!(
                "[limits]\nmax_body_bytes = \"big\"\n{}",
                keys.toml(&[("payments", "")])
            ),
            "max_body_bytes",
        ),
        (
            "[namespaces.payments]\nkeyring = \"/nonexistent/k.json\"\n".to_owned(),
            "/nonexistent/k.json",
        ),
        (
            format!(
                "[kek]\nmaster_key_file = {:?}\n[namespaces.payments]\nkeyring = {:?}\n",
                "/nonexistent/master.key",
                keys.keyring("payments")
            ),
            "master.key",
        ),
    ];
    for (i, (toml, needle)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&config, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcodec"))
            .env_clear()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "case {i} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "case {i}: {err:?} should name {needle}"
        );
    }
}

fn metric(url: &str, name: &str) -> Option<f64> {
    let (_, text) = curl(&[&format!("{url}/metrics")]);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn sigterm_under_load_lets_every_in_flight_request_finish() {
    const IN_FLIGHT: usize = 8;
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}",
        keys.toml(&[("payments", "")])
    );
    let mut server = ServeProcess::start(&toml, &[]);
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();

    // Requests whose bodies are only half sent: the server is waiting on them.
    let body = card_batch();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut streams: Vec<TcpStream> = (0..IN_FLIGHT)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            write!(
                stream,
                "POST /encode HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Namespace: payments\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(first).unwrap();
            stream.flush().unwrap();
            stream
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server.url, "tcodec_requests_in_flight") != Some(IN_FLIGHT as f64) {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never all started"
        );
        std::thread::yield_now();
    }

    server.terminate();
    server.wait_for_log("shutting down");
    // No new connections once shutdown began...
    assert!(
        TcpStream::connect(&addr).is_err(),
        "the listener should be closed"
    );
    // ...but every request in flight completes.
    for stream in &mut streams {
        stream.write_all(rest).unwrap();
    }
    for stream in &mut streams {
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(texts(json).len(), 2, "{json}");
    }
    let status = server.wait();
    assert!(status.success(), "exit status {status}");
    assert!(server.log_text().contains("all requests finished"));
}

#[test]
fn logs_at_every_level_hold_no_payload_content() {
    let keys = Keyrings::new(&["payments"]);
    for level in ["error", "warn", "info", "debug", "trace"] {
        let server = ServeProcess::start_on_free_port(|port| {
            format!(
                "listen = \"127.0.0.1:{port}\"\n[log]\nlevel = \"{level}\"\n{}",
                keys.toml(&[("payments", "")])
            )
        });
        let (status, sealed) = curl(&args(&curl_post(
            &format!("{}/encode", server.url),
            "payments",
            &card_batch(),
        )));
        assert_eq!(status, 200, "{level}: {sealed}");
        let (status, plain) = curl(&args(&curl_post(
            &format!("{}/decode", server.url),
            "payments",
            &sealed,
        )));
        assert_eq!(status, 200, "{level}: {plain}");
        // A failing request too: its error is logged.
        let mut tampered: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        tampered["payloads"][0]["data"] = serde_json::json!("AQEAAmsx");
        let (status, _) = curl(&args(&curl_post(
            &format!("{}/decode", server.url),
            "payments",
            &tampered.to_string(),
        )));
        assert_eq!(status, 400, "{level}");
        let log = server.log_text();
        // Each level's log holds what that level shows, so the check below reads real output.
        let expected = match level {
            "error" => "",
            "warn" => "codec request failed",
            _ => "listening on",
        };
        assert!(
            log.contains(expected),
            "{level}: the log is written:\n{log}"
        );
        assert_no_plaintext(&log);
    }
}

/// Every line of a text log is one the server wrote: it starts with a
/// timestamp, and nothing a request sent begins a line of its own.
fn assert_lines_unforged(log: &str, forged: &str) {
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes().get(4) == Some(&b'-'),
            "a line that is not the server's: {line:?}\n{log}"
        );
        assert!(!line.starts_with(forged), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_can_forge_a_log_line() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    const FORGED: &str = "2026-01-01T00:00:00Z  INFO tcodec::audit: codec request user=admin";

    // A legacy payload whose key id carries a line break: its error reaches
    // the audit line.
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[log]\nformat = \"text\"\n{}",
        keys.toml(&[("payments", "decode_allow = [\"binary/encrypted\"]")])
    );
    let server = ServeProcess::start(&toml, &[("NO_COLOR", "1")]);
    let hostile = serde_json::json!({"payloads": [{
        "metadata": {
            "encoding": STANDARD.encode("binary/encrypted"),
            "encryption-key-id": STANDARD.encode(format!("k1\n{FORGED}")),
        },
        "data": STANDARD.encode([0u8; 40]),
    }]});
    let (status, body) = curl(&args(&curl_post(
        &format!("{}/decode", server.url),
        "payments",
        &hostile.to_string(),
    )));
    assert_eq!(status, 400, "{body}");
    let log = server.log_text();
    assert!(log.contains("codec request failed"), "{log}");
    assert!(
        log.contains(r"k1\n2026-01-01"),
        "the key id is in the log, escaped:\n{log}"
    );
    assert_lines_unforged(&log, FORGED);

    // A token whose header carries a line break: its error reaches the
    // authentication-failed line.
    let issuer = Issuer::start().await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[log]\nformat = \"text\"\n{}{}",
        issuer.auth_toml(),
        keys.toml(&[("payments", "")])
    );
    let server = ServeProcess::start(&toml, &[("NO_COLOR", "1")]);
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"x\n{FORGED}","typ":"JWT"}}"#));
    let token = format!("{header}.e30.c2ln");
    let mut request = vec!["-H".to_owned(), format!("Authorization: Bearer {token}")];
    request.extend(curl_post(
        &format!("{}/decode", server.url),
        "payments",
        "{}",
    ));
    let (status, _) = curl(&args(&request));
    assert_eq!(status, 401);
    let log = server.log_text();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        log.contains(r"x\n2026-01-01"),
        "the token's text is in the log, escaped:\n{log}"
    );
    assert_lines_unforged(&log, FORGED);
}

/// A server on plain HTTP with `limits` lines under `[limits]`.
fn serve_with_limits(limits: &str) -> (ServeProcess, Keyrings, String) {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[limits]\n{limits}\n{}",
        keys.toml(&[("payments", "")])
    );
    let server = ServeProcess::start(&toml, &[]);
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    (server, keys, addr)
}

/// Whether the server closes `stream` (EOF or reset) before `within`; a
/// connection it keeps open runs into the read timeout instead.
fn closed_by_server(stream: &mut TcpStream, within: std::time::Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_client_dribbling_its_headers_is_cut_off() {
    let (server, _keys, addr) = serve_with_limits("header_read_timeout_ms = 1000");
    let mut stream = TcpStream::connect(&addr).unwrap();
    let reader = stream.try_clone().unwrap();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let closed = std::sync::Arc::clone(&closed);
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut answer = Vec::new();
            let _ = reader.read_to_end(&mut answer);
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            answer
        })
    };
    // A byte every 50 ms: the headers below would take about 30 s to arrive.
    let headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{}\r\n",
        "X-Slow: a\r\n".repeat(55)
    );
    let mut sent = 0;
    for byte in headers.as_bytes() {
        if closed.load(std::sync::atomic::Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        sent < headers.len(),
        "the server waited for all {sent} bytes of dribbled headers"
    );
    let answer = watch.join().unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 200 "),
        "the dribbled request was answered"
    );
    drop(server);
}

#[test]
fn two_thousand_idle_connections_neither_lock_out_a_request_nor_stay_open() {
    const IDLE: usize = 2000;
    let (server, _keys, addr) = serve_with_limits("header_read_timeout_ms = 2000");
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect(&addr).unwrap_or_else(|e| {
                panic!(
                    "idle connection {i} of {IDLE}: {e} (raise `ulimit -n` above {})",
                    2 * IDLE + 100
                )
            })
        })
        .collect();
    let (status, _) = curl(&[&format!("{}/healthz", server.url)]);
    assert_eq!(status, 200, "a request while {IDLE} connections idle");
    let (status, body) = curl(&args(&curl_post(
        &format!("{}/encode", server.url),
        "payments",
        &card_batch(),
    )));
    assert_eq!(status, 200, "{body}");
    // Connections that never sent a request do not stay: the first and the last.
    let within = std::time::Duration::from_secs(60);
    assert!(
        closed_by_server(&mut idle[0], within),
        "an idle connection stayed open"
    );
    assert!(
        closed_by_server(&mut idle[IDLE - 1], within),
        "an idle connection stayed open"
    );
}

#[test]
fn past_max_connections_the_server_accepts_nothing_until_one_closes() {
    let (server, _keys, addr) = serve_with_limits(
        "max_connections = 4\nheader_read_timeout_ms = 600000\nidle_timeout_ms = 600000",
    );
    let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Each held connection is being served: a request on one is answered.
    write!(held[3], "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = [0u8; 12];
    held[3].read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let healthz = format!("{}/healthz", server.url);
    let (status, _) = curl(&["--max-time", "3", &healthz]);
    assert_eq!(
        status, 0,
        "a fifth connection was served past max_connections = 4"
    );
    drop(held.pop());
    let (status, _) = curl(&[&healthz]);
    assert_eq!(status, 200, "a slot freed by a closed connection is used");
}

/// A `binary/zlib` payload's JSON, its data a [`zlib_bomb`](support::zlib_bomb::zlib_bomb).
fn zlib_bomb(field: u8, len: usize) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        r#"{{"metadata":{{"encoding":"{}"}},"data":"{}"}}"#,
        b64.encode("binary/zlib"),
        b64.encode(support::zlib_bomb::zlib_bomb(field, len))
    )
}

/// POSTs `body` (from a file: it is too big for a command line) to `/decode`.
fn decode_file(server: &ServeProcess, body: &str) -> (u16, String) {
    support::server::curl_post_file(&format!("{}/decode", server.url), "payments", body)
}

/// The server's peak resident memory, from /proc.
fn peak_rss_bytes(server: &ServeProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_decompression_bomb_spread_over_many_payloads_is_refused_with_bounded_memory() {
    // 700 payloads of a few KiB, each inflating to just under the per-payload
    // limit (max_body_bytes, 8 MiB): 5.5 GiB to decode and more to answer,
    // from a body under 8 MiB. The request's decoded budget stops it.
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}",
        keys.toml(&[("payments", "decode_allow = [\"binary/zlib\"]")])
    );
    let server = ServeProcess::start(&toml, &[]);
    let bomb = zlib_bomb(2, 8_000_000);
    let body = format!(r#"{{"payloads":[{}]}}"#, vec![bomb; 700].join(","));
    assert!(body.len() < 8 << 20, "{} bytes", body.len());
    let (status, answer) = decode_file(&server, &body);
    assert_eq!(status, 413, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["code"], "request_too_large", "{answer}");
    let peak = peak_rss_bytes(&server);
    assert!(peak < 256 << 20, "the server peaked at {} MiB", peak >> 20);
}

#[test]
fn a_timed_out_request_stops_its_work_at_the_next_payload() {
    // 1,000 payloads that each inflate 4 MiB of a field no one reads: seconds
    // of work whose answer is small, under budgets that allow all of it. The
    // request times out after 100 ms; its work must stop there, not finish.
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[limits]\nrequest_timeout_ms = 100\nmax_decoded_bytes = 1000000000000\n{}",
        keys.toml(&[("payments", "decode_allow = [\"binary/zlib\"]")])
    );
    let server = ServeProcess::start(&toml, &[]);
    let bomb = zlib_bomb(15, 4 << 20);
    let body = format!(r#"{{"payloads":[{}]}}"#, vec![bomb; 1000].join(","));
    let (status, answer) = decode_file(&server, &body);
    assert_eq!(status, 503, "{answer}");
    let mut server = server;
    let line = server.wait_for_log("stopped the codec work");
    let field = |name: &str| -> usize {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("of"), 1000, "{line}");
    assert!(field("done") < 1000, "{line}");
    // And the blocking thread is free again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metric(&server.url, "tcodec_blocking_work_running") != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the work never stopped"
        );
        std::thread::yield_now();
    }
}
