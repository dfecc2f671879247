//! One 1,000-payload `/decode` body answered `N` times by `tcodec_json::process`
//! under the codec server's default limits: run under callgrind with N = 1 and
//! N = 11, the difference over 10 is one request's instruction count, a
//! measure the machine's noise does not move (see BENCHMARKS.md).
//!
//! `valgrind --tool=callgrind target/release/examples/decode_instructions 11`
#![allow(clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, Payload};
use tcodec_benches::{record, request_body};
use tcodec_json::{Direction, Limits, process};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: decode_instructions N");
    let keyring = MemoryKeyring::with_primary(
        KeyId::new("bench").expect("valid id"),
        SecretBytes32::new([0x42; 32]),
    );
    let codec = Codec::new(Arc::new(keyring));
    let records: Vec<Payload> = (0..1000).map(record).collect();
    let body = request_body(&codec.encode(&records).expect("encode"));
    // The server's defaults: 8 MiB bodies, 4× decoded, 6× answered.
    let cancelled = AtomicBool::new(false);
    let limits = Limits {
        max_payloads: 10_000,
        max_decoded_bytes: 32 << 20,
        max_answer_bytes: 48 << 20,
        cancelled: Some(&cancelled),
    };
    for _ in 0..n {
        let answer = process(&codec, Direction::Decode, &body, &limits).expect("decode");
        std::hint::black_box(answer);
    }
}
