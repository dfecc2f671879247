//! Faults around the keyring file: replaced by garbage or truncated under a
//! running codec server, and a write that fails half way through a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::server::{Keyrings, MASTER_KEY_HEX, ServeProcess, curl, curl_post};
use support::{key_ids, plain_batch, texts};

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn readyz(url: &str) -> serde_json::Value {
    let (status, body) = curl(&[&format!("{url}/readyz")]);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status == 200, ready["ready"] == true, "{status} {body}");
    ready
}

/// Waits (up to a minute) until `/readyz` reports keyring warnings, or none.
fn wait_for_warnings(url: &str, present: bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = readyz(url);
        let has = ready["warnings"].as_u64().unwrap() > 0;
        if ready["checked"] == true && has == present {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never reported warnings={present}: {ready}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_corrupt_keyring_file_under_a_running_server_keeps_the_last_good_keyring() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}",
        keys.toml(&[("payments", "")])
    );
    let server = ServeProcess::start(&toml, &[]);
    let post = |endpoint: &str, body: &str| {
        curl(&args(&curl_post(
            &format!("{}/{endpoint}", server.url),
            "payments",
            body,
        )))
    };
    let (status, sealed) = post("encode", &plain_batch(&["\"before\""]));
    assert_eq!(status, 200);
    let path = keys.keyring("payments");
    let good = std::fs::read(&path).unwrap();

    // Written in place, not atomically: garbage, then a truncated copy, then nothing.
    for (what, bytes) in [
        ("garbage", b"\x00\xffnot a keyring".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let ready = wait_for_warnings(&server.url, true);
        assert_eq!(ready["ready"], true, "{what}: the server stays ready");
        // The probe gets a count; the log says what is wrong.
        let log = server.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("payments") && l.contains("last good keyring")),
            "{what}: {log}"
        );
        let (status, plain) = post("decode", &sealed);
        assert_eq!(status, 200, "{what}: {plain}");
        assert_eq!(texts(&plain), ["\"before\""], "{what}");
        let (status, again) = post("encode", &plain_batch(&["\"during\""]));
        assert_eq!(status, 200, "{what}: {again}");
        assert_eq!(key_ids(&again), ["k1"], "{what}");
    }

    // A good file again, rotated: the server takes it.
    std::fs::write(&path, &good).unwrap();
    tcodec_keys::ops::rotate(&path, &keys.keks(), None).unwrap();
    wait_for_warnings(&server.url, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, sealed) = post("encode", &plain_batch(&["\"after\""]));
        assert_eq!(status, 200);
        if key_ids(&sealed) == ["k2"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated keyring was never taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, plain) = post("decode", &sealed);
    assert_eq!(
        (status, texts(&plain)),
        (200, vec!["\"before\"".to_owned()])
    );
}

#[test]
fn a_rotation_whose_write_fails_leaves_the_keyring_intact() {
    // The disk filling up mid-write, simulated with a file size limit
    // (RLIMIT_FSIZE, and SIGXFSZ ignored so the write fails with EFBIG).
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    let tcodec = |limit: Option<u64>, args: &[&str]| {
        let mut command = Command::new("sh");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TCODEC_KEYRING", &keyring)
            .env("TCODEC_MASTER_KEY", MASTER_KEY_HEX)
            .arg("-c")
            .arg(match limit {
                Some(bytes) => format!("trap '' XFSZ; exec prlimit --fsize={bytes} \"$0\" \"$@\""),
                None => "exec \"$0\" \"$@\"".to_owned(),
            })
            .arg(env!("CARGO_BIN_EXE_tcodec"))
            .args(args);
        command.output().unwrap()
    };
    let out = tcodec(
        None,
        &["keys", "init", "--name", "payments", "--kek", "local"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read(&keyring).unwrap();

    let limit = before.len() as u64 + 64; // the rotated file is larger than this
    let out = tcodec(Some(limit), &["keys", "rotate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the rotation should fail");
    assert!(
        stderr.to_lowercase().contains("too large") || stderr.contains("write"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&keyring).unwrap(),
        before,
        "the keyring is untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "keyring.json" && !n.ends_with(".lock"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );

    // Nothing is stuck: the lock is free and the next rotation works.
    let out = tcodec(None, &["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tcodec(None, &["keys", "list", "--json"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("\"k2\""), "{list}");
}
