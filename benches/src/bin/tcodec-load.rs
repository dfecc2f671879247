//! A load generator for the codec server, with its baseline measured in the
//! same run.
//!
//! ```text
//! cargo build --release -p tcodec-cli -p tcodec-benches
//! target/release/tcodec-load target/release/tcodec [SECONDS_PER_PHASE]
//! ```
//!
//! It starts `tcodec serve` (the given binary) twice on 127.0.0.1, over plain
//! HTTP and over TLS (certificates from the test generator in the project
//! venv), and measures:
//! - the in-process `Codec::decode` of a 1-payload and a 1,000-payload batch
//!   (the baseline);
//! - `/decode` latency, p50 and p99, for the same two batches, one connection;
//! - requests per second for the 1-payload batch at 1, 8 and 32 connections;
//! - the server's peak RSS (`VmHWM`) and every non-200 answer;
//! - the HTTP floor: the same 1-payload and 1,000-payload requests, answered with
//!   the codec server's real answers to them, over plain HTTP by a server that
//!   does nothing else (this binary, run with `--http-floor`).
//!
//! It prints Markdown tables for `BENCHMARKS.md` and exits with failure if any
//! request was answered with anything but a 200. Every request goes to
//! loopback; every phase is bounded in time. Servers start on ports picked
//! free, started again on a fresh one when another process took it first, and
//! are waited for until they themselves listen (the end-to-end tests'
//! `tests/support/common.rs`). `scripts/test.sh` runs it once, with phases of
//! 0.2 s, to check it works.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tcodec::Codec;
use tcodec_benches::{record, request_body};
use tcodec_keys::FileKeyring;
use tcodec_keys::kek::local::LocalKek;
use tcodec_keys::kek::{KekProvider, Keks};

// Free ports and waiting for a server to listen, shared with the end-to-end tests.
#[path = "../../../tests/support/common.rs"]
mod common;

const MASTER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(tcodec: &Path, dir: &Path, name: &str, tls: Option<&Path>) -> Self {
        let tls_section = tls
            .map(|d| {
                format!(
                    "[tls]\ncert = {:?}\nkey = {:?}\n",
                    d.join("server.pem").display().to_string(),
                    d.join("server.key").display().to_string()
                )
            })
            .unwrap_or_default();
        let config = dir.join(format!("{name}.toml"));
        let log = dir.join(format!("{name}.log"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        common::on_free_port("tcodec serve", |port| {
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{port}\"\n{tls_section}[log]\nlevel = \"warn\"\n[limits]\nmax_concurrent_requests = 1024\n\
                     [kek]\nmaster_key_file = {:?}\n[namespaces.default]\nkeyring = {:?}\n",
                    dir.join("master.key").display().to_string(),
                    dir.join("default.json").display().to_string()
                ),
            )
            .unwrap();
            let mut child = Command::new(tcodec)
                .args(["serve", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start tcodec serve");
            common::wait_listening(&mut child, port, &log)?;
            Ok(Self {
                child,
                url: format!("{scheme}://127.0.0.1:{port}"),
            })
        })
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(ca: &Path) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // TLS 1.3 suites in the order Chromium and Go's crypto/tls (the temporal
    // CLI) offer them on machines with AES instructions: AES-128-GCM first.
    // The server follows the client's order, as rustls does by default.
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As browsers and Go's HTTP client (the temporal CLI) do: no Nagle delay
    // on the request's last segment.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

struct Tally {
    errors: AtomicU64,
}

async fn post(client: &HttpsClient, url: &str, body: &Bytes, tally: &Tally) -> usize {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("x-namespace", "default")
        .body(Full::new(body.clone()))
        .unwrap();
    match client.request(request).await {
        Ok(response) if response.status() == 200 => response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0),
        Ok(_) | Err(_) => {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            0
        }
    }
}

/// The server's own `/decode` time so far, from its `/metrics`: (sum, count).
async fn server_time(client: &HttpsClient, base: &str) -> (f64, f64) {
    let response = client
        .request(
            hyper::Request::get(format!("{base}/metrics"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{endpoint=\"decode\"}} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("tcodec_request_duration_seconds_sum"),
        value("tcodec_request_duration_seconds_count"),
    )
}

/// The answer to one request.
async fn answer(client: &HttpsClient, url: &str, body: &Bytes) -> Bytes {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("x-namespace", "default")
        .body(Full::new(body.clone()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// `tcodec-load --http-floor PORT DIR`: an HTTP server that reads each
/// request's body whole and answers with the bytes of `DIR/answer-1.json` (path
/// `/decode-1`) or `DIR/answer-1000.json` (any other path), doing nothing
/// else. Given the codec server's real answers, it is the floor under
/// `/decode`: the same bytes over the same kind of connection, with no JSON
/// and no codec.
fn http_floor(port: u16, dir: &Path) {
    let read = |name: &str| Bytes::from(std::fs::read(dir.join(name)).unwrap());
    let answers = (read("answer-1.json"), read("answer-1000.json"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let answers = answers.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let answer = if request.uri().path() == "/decode-1" {
                            answers.0.clone()
                        } else {
                            answers.1.clone()
                        };
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            std::hint::black_box(body);
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(answer)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sequential requests for `phase`: (p50, p99).
async fn latency(
    client: &HttpsClient,
    url: &str,
    body: &Bytes,
    phase: Duration,
    tally: &Tally,
) -> (Duration, Duration) {
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < phase || samples.len() < 20 {
        let t = Instant::now();
        post(client, url, body, tally).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// Requests per second with `connections` concurrent loops for `phase`.
async fn throughput(
    client: &HttpsClient,
    url: &str,
    body: &Bytes,
    connections: usize,
    phase: Duration,
    tally: &Arc<Tally>,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..connections {
        let (client, url, body, tally, done) = (
            client.clone(),
            url.to_owned(),
            body.clone(),
            Arc::clone(tally),
            Arc::clone(&done),
        );
        loops.push(tokio::spawn(async move {
            while started.elapsed() < phase {
                post(&client, &url, &body, &tally).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for l in loops {
        l.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Median time of `f` over repeated runs for about `phase`.
fn median_of(phase: Duration, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < phase || samples.len() < 20 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    percentile(&samples, 0.5)
}

fn us(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{micros:.0} µs")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--http-floor") {
        http_floor(args[2].parse().unwrap(), Path::new(&args[3]));
        return;
    }
    let tcodec = PathBuf::from(
        args.get(1)
            .expect("usage: tcodec-load PATH_TO_TCODEC [SECONDS_PER_PHASE]"),
    );
    let phase = Duration::from_secs_f64(args.get(2).map(|s| s.parse().unwrap()).unwrap_or(3.0));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), MASTER_KEY).unwrap();
    std::fs::set_permissions(
        dir.path().join("master.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let local = LocalKek::parse(MASTER_KEY).unwrap();
    let kek = local.kek_ref(None).unwrap();
    let keks = Keks::new().with(Arc::new(local));
    let keyring_path = dir.path().join("default.json");
    tcodec_keys::ops::init(&keyring_path, "default", &keks, &kek).unwrap();
    let status = Command::new(common::repo_root().join(".venv/bin/python"))
        .arg(common::repo_root().join("cli/tests/support/gen_test_keys.py"))
        .arg("tls")
        .arg(dir.path())
        .status()
        .expect("run scripts/setup.sh first: the TLS test certificates come from the project venv");
    assert!(status.success());

    // The payloads: small JSON records as the UI decodes them one array at a time.
    let keyring = FileKeyring::open(&keyring_path, keks.clone()).unwrap();
    let codec = Codec::new(Arc::new(keyring));
    let one = codec.encode(&[record(1)]).unwrap();
    let many = codec
        .encode(&(0..1000).map(record).collect::<Vec<_>>())
        .unwrap();
    let in_process_one = median_of(phase, || drop(codec.decode(&one).unwrap()));
    let in_process_many = median_of(phase, || drop(codec.decode(&many).unwrap()));
    let (body_one, body_many) = (
        Bytes::from(request_body(&one)),
        Bytes::from(request_body(&many)),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client(&dir.path().join("ca.pem"));
    println!(
        "| path | 1-payload p50 | p99 | 1,000-payload p50 | p99 | 1,000 batch: HTTP / in-process | server's own time, 1,000 batch (mean) | server / in-process | req/s ×1 | ×8 | ×32 | peak RSS | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| in-process `Codec::decode` (baseline) | {} | | {} | | 1.00 | | | | | | | |",
        us(in_process_one),
        us(in_process_many)
    );
    // Every answer but a 200, over all phases: any fails the run.
    let mut failed = 0;
    for (name, tls) in [("HTTP", None), ("TLS", Some(dir.path()))] {
        let server = Server::start(&tcodec, dir.path(), name, tls);
        let url = format!("{}/decode", server.url);
        let tally = Arc::new(Tally {
            errors: AtomicU64::new(0),
        });
        let (one_p50, one_p99, many_p50, many_p99, many_server, rps) = rt.block_on(async {
            let (one_p50, one_p99) = latency(&client, &url, &body_one, phase, &tally).await;
            let (sum0, count0) = server_time(&client, &server.url).await;
            let (many_p50, many_p99) = latency(&client, &url, &body_many, phase, &tally).await;
            let (sum1, count1) = server_time(&client, &server.url).await;
            if tls.is_none() {
                for (body, name) in [
                    (&body_one, "answer-1.json"),
                    (&body_many, "answer-1000.json"),
                ] {
                    let real = answer(&client, &url, body).await;
                    std::fs::write(dir.path().join(name), &real).unwrap();
                }
            }
            let many_server = Duration::from_secs_f64((sum1 - sum0) / (count1 - count0).max(1.0));
            let mut rps = Vec::new();
            for connections in [1, 8, 32] {
                rps.push(throughput(&client, &url, &body_one, connections, phase, &tally).await);
            }
            (one_p50, one_p99, many_p50, many_p99, many_server, rps)
        });
        println!(
            "| `/decode` over {name} | {} | {} | {} | {} | {:.2}× | {} | {:.2}× | {:.0} | {:.0} | {:.0} | {:.1} MiB | {} |",
            us(one_p50),
            us(one_p99),
            us(many_p50),
            us(many_p99),
            many_p50.as_secs_f64() / in_process_many.as_secs_f64(),
            us(many_server),
            many_server.as_secs_f64() / in_process_many.as_secs_f64(),
            rps[0],
            rps[1],
            rps[2],
            server.peak_rss_mib(),
            tally.errors.load(Ordering::Relaxed)
        );
        failed += tally.errors.load(Ordering::Relaxed);
    }

    // The floor: the same request and answer bodies over plain HTTP, nothing done.
    let floor_log = dir.path().join("http-floor.log");
    let floor = common::on_free_port("the HTTP floor server", |port| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--http-floor", &port.to_string()])
            .arg(dir.path())
            .stderr(std::fs::File::create(&floor_log).unwrap())
            .spawn()
            .unwrap();
        common::wait_listening(&mut child, port, &floor_log)?;
        Ok(Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    });
    let tally = Tally {
        errors: AtomicU64::new(0),
    };
    let (one_url, many_url) = (
        format!("{}/decode-1", floor.url),
        format!("{}/decode", floor.url),
    );
    let ((one_p50, one_p99), (floor_p50, floor_p99)) = rt.block_on(async {
        (
            latency(&client, &one_url, &body_one, phase, &tally).await,
            latency(&client, &many_url, &body_many, phase, &tally).await,
        )
    });
    println!(
        "| HTTP floor: the same requests and answers, no JSON, no codec | {} | {} | {} | {} | {:.2}× | | | | | | | {} |",
        us(one_p50),
        us(one_p99),
        us(floor_p50),
        us(floor_p99),
        floor_p50.as_secs_f64() / in_process_many.as_secs_f64(),
        tally.errors.load(Ordering::Relaxed)
    );
    failed += tally.errors.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("tcodec-load: {failed} requests were not answered 200 (see the errors column)");
        std::process::exit(1);
    }
}
