//! The codec server's per-request work without HTTP: a `/decode` body of 1,000
//! small sealed payloads, answered by `tcodec_server::json::process` (what the
//! server runs: parse, decode each payload's base64 into one buffer, decrypt it
//! there, write the answer), against the in-process `Codec::decode` of the same
//! payloads, in the same run. Also measured: `Codec::decode_owned`, and the
//! batch path the server took before (every payload made a `Payload`, decoded
//! together by `decode_owned`, put back into the answer), which `/encode` still
//! takes. The difference is what the server adds per payload beyond the codec.
#![allow(clippy::expect_used, missing_docs)] // a bench panics on setup failure

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, Payload};
use tcodec_benches::{record, request_body, unshared};
use tcodec_server::json::{PayloadsJson, process};
use tcodec_server::metrics::Endpoint;

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
        b.iter(|| process(&codec, Endpoint::Decode, black_box(&body), 10_000).expect("decode"))
    });
    group.bench_function("json-and-codec-batch", |b| {
        b.iter(|| {
            let request = PayloadsJson::parse(black_box(&body)).expect("parse");
            let (payloads, answer) = request
                .split(|encoding| codec.decodes(encoding))
                .expect("split");
            let out = codec.decode_owned(payloads).expect("decode");
            answer.to_json(&out).expect("answer")
        })
    });
    group.finish();
}

criterion_group!(benches, decode_batch);
criterion_main!(benches);
