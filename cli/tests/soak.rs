//! A bounded soak: `tcodec serve` under concurrent load on loopback for a
//! fixed time while the keyring is rotated underneath it. No request may fail,
//! every payload must decode to what was sealed, and memory must stay flat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::server::{Keyrings, ServeProcess};
use support::{key_ids, plain_batch, texts};

const CLIENTS: usize = 8;
const DURATION: Duration = Duration::from_secs(12);
const ROTATE_EVERY: Duration = Duration::from_millis(1500);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    wrong: AtomicU64,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(client: &HttpClient, url: &str, body: String) -> (u16, String) {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("x-namespace", "payments")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn load_with_key_rotations_fails_nothing_and_keeps_memory_flat() {
    let keys = Keyrings::new(&["payments"]);
    let server = ServeProcess::start_on_free_port(|port| {
        format!(
            "listen = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n{}",
            keys.toml(&[("payments", "")])
        )
    });
    let url = server.url.clone();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    // Rotations underneath the load.
    let rotations = std::thread::spawn({
        let (path, keks, stop) = (keys.keyring("payments"), keys.keks(), Arc::clone(&stop));
        move || {
            let mut n = 0;
            let mut next = Instant::now() + ROTATE_EVERY;
            while !stop.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    tcodec_keys::ops::rotate(&path, &keks, None).unwrap();
                    n += 1;
                    next += ROTATE_EVERY;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        }
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rss_warm, key_versions_seen) = rt.block_on(async {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let started = Instant::now();
        let mut workers = Vec::new();
        for worker in 0..CLIENTS {
            let (client, url, tally) = (client.clone(), url.clone(), Arc::clone(&tally));
            workers.push(tokio::spawn(async move {
                let mut kept: Vec<(String, Vec<String>)> = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                let mut i = 0u64;
                while started.elapsed() < DURATION {
                    i += 1;
                    let batch: Vec<String> = (0..4)
                        .map(|j| format!("\"client {worker} batch {i} item {j}\""))
                        .collect();
                    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                    let (status, sealed) =
                        call(&client, &format!("{url}/encode"), plain_batch(&refs)).await;
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        tally.failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    seen.extend(key_ids(&sealed));
                    // Decode what was just sealed, and something sealed earlier
                    // (perhaps under a key rotated out since).
                    if i % 8 == 1 {
                        kept.push((sealed.clone(), batch.clone()));
                    }
                    let old = kept[(i as usize) % kept.len()].clone();
                    for (sealed, expected) in [(sealed, batch), old] {
                        let (status, plain) = call(&client, &format!("{url}/decode"), sealed).await;
                        tally.requests.fetch_add(1, Ordering::Relaxed);
                        if status != 200 {
                            tally.failures.fetch_add(1, Ordering::Relaxed);
                        } else if texts(&plain) != expected {
                            tally.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                seen
            }));
        }
        // Memory once warmed up (connections open, keys cached), then at the end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let warm = rss_kib(server.pid());
        let mut seen = std::collections::BTreeSet::new();
        for w in workers {
            seen.extend(w.await.unwrap());
        }
        (warm, seen)
    });
    stop.store(true, Ordering::SeqCst);
    let rotated = rotations.join().unwrap();
    let rss_end = rss_kib(server.pid());

    let requests = tally.requests.load(Ordering::Relaxed);
    assert!(requests > 100, "only {requests} requests in {DURATION:?}");
    assert_eq!(
        tally.failures.load(Ordering::Relaxed),
        0,
        "failed requests out of {requests}:\n{}",
        server.log_text()
    );
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong plaintext out of {requests}"
    );
    assert!(rotated >= 5, "only {rotated} rotations");
    assert!(
        key_versions_seen.len() >= 3,
        "encodes used only {key_versions_seen:?}"
    );
    assert!(
        rss_end <= rss_warm + 16 * 1024,
        "memory grew from {rss_warm} KiB to {rss_end} KiB over {requests} requests"
    );
}
