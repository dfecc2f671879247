//! The codec server's per-request work without HTTP: a `/decode` body of 1,000
//! small sealed payloads, answered by `tcodec_json::process` (what the server
//! runs: parse, decode each payload's base64 into one buffer, decrypt it there,
//! write the answer), against the in-process `Codec::decode` of the same
//! payloads, in the same run; also `Codec::decode_owned`. And the same for
//! `/encode` of the 1,000 records against `Codec::encode`. The difference is
//! what the JSON layer adds per payload beyond the codec.
#![allow(clippy::expect_used, missing_docs)] // a bench panics on setup failure

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, Payload};
use tcodec_benches::{record, request_body, unshared};
use tcodec_json::{Direction, Limits, process};

/// The codec server's default limits (8 MiB bodies: 4× decoded, 6× answered).
fn server_limits() -> Limits<'static> {
    Limits {
        max_payloads: 10_000,
        max_decoded_bytes: 32 << 20,
        max_answer_bytes: 48 << 20,
        cancelled: None,
    }
}

fn decode_batch(c: &mut Criterion) {
    let keyring = MemoryKeyring::with_primary(
        KeyId::new("bench").expect("valid id"),
        SecretBytes32::new([0x42; 32]),
    );
    let codec = Codec::new(Arc::new(keyring));
    let records: Vec<Payload> = (0..1000).map(record).collect();
    let sealed = codec.encode(&records).expect("encode");
    let body = request_body(&sealed);

    let mut group = c.benchmark_group("server-decode-1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("codec", |b| {
        b.iter(|| codec.decode(black_box(&sealed)).expect("decode"))
    });
    // The codec's faster path for payloads handed over (what the server uses),
    // its buffers made outside the timing.
    group.bench_function("codec-owned", |b| {
        b.iter_batched(
            || unshared(&sealed),
            |batch| codec.decode_owned(batch).expect("decode"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("server-process", |b| {
        b.iter(|| {
            process(
                &codec,
                Direction::Decode,
                black_box(&body),
                &server_limits(),
            )
            .expect("decode")
        })
    });
    group.finish();

    let plain = request_body(&records);
    let mut group = c.benchmark_group("server-encode-1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("codec", |b| {
        b.iter(|| codec.encode(black_box(&records)).expect("encode"))
    });
    group.bench_function("server-process", |b| {
        b.iter(|| {
            process(
                &codec,
                Direction::Encode,
                black_box(&plain),
                &server_limits(),
            )
            .expect("encode")
        })
    });
    group.finish();
}

criterion_group!(benches, decode_batch);
criterion_main!(benches);
