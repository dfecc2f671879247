//! Codec throughput against raw `ring` AES-256-GCM on the same buffers.
//!
//! Groups (each measured in the same run, so ratios are meaningful on a noisy machine):
//! - `seal/<size>`: `raw-ring-aes256gcm` (copy into a fresh buffer, seal in place, append
//!   the tag: the least any encoder must do) vs `tcodec-encode` (compression off).
//! - `open/<size>`: `raw-ring-aes256gcm` vs `tcodec-decode`; and for buffers handed over
//!   (decrypted where they are, no copy on either side) `raw-ring-aes256gcm-in-place` vs
//!   `tcodec-decode-owned`.
//! - `json`: realistic JSON payloads with compression on and off.
//! - `aes-gcm/<size>`: the two AES-256-GCM implementations the project may take its
//!   primitives from, sealing in place with the key set up for each message (as XAES-256-GCM
//!   needs): `ring` (tcodec's) against RustCrypto's `aes-gcm`.
//!
//! `benches/report.py` turns criterion's estimates into BENCHMARKS.md's tables.
#![allow(clippy::expect_used, clippy::print_stdout, missing_docs)] // a bench panics on setup failure

use std::hint::black_box;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecOptions, Compression, Payload};
use tcodec_benches::unshared;

const SIZES: [(usize, &str); 4] = [
    (64, "64B"),
    (1024, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn bytes(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn codec(compression: Compression) -> Codec {
    let keyring = MemoryKeyring::with_primary(
        KeyId::new("bench").expect("valid id"),
        SecretBytes32::new([0x42; 32]),
    );
    Codec::with_options(
        Arc::new(keyring),
        CodecOptions::default().with_compression(compression),
    )
}

fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("32-byte key"))
}

fn raw_seal(key: &LessSafeKey, data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(data.len() + 16);
    buf.extend_from_slice(data);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::empty(),
            &mut buf,
        )
        .expect("seal");
    buf.extend_from_slice(tag.as_ref());
    buf
}

/// Opens `buf` (ciphertext and tag) in place, as `raw_seal` sealed it.
fn raw_open(key: &LessSafeKey, mut buf: Vec<u8>) -> Vec<u8> {
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::empty(),
            &mut buf,
        )
        .expect("open")
        .len();
    buf.truncate(n);
    buf
}

fn seal_and_open(c: &mut Criterion) {
    let codec = codec(Compression::Off);
    let key = raw_key();
    for (size, label) in SIZES {
        let data = bytes(size);
        let payload = vec![Payload::new("binary/plain", data.clone())];

        let mut group = c.benchmark_group(format!("seal/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("raw-ring-aes256gcm", |b| {
            b.iter(|| raw_seal(&key, black_box(&data)))
        });
        group.bench_function("tcodec-encode", |b| {
            b.iter(|| codec.encode(black_box(&payload)).expect("encode"))
        });
        group.finish();

        let sealed_raw = raw_seal(&key, &data);
        let sealed = codec.encode(&payload).expect("encode");
        let mut group = c.benchmark_group(format!("open/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("raw-ring-aes256gcm", |b| {
            b.iter(|| raw_open(&key, black_box(&sealed_raw).clone()))
        });
        group.bench_function("tcodec-decode", |b| {
            b.iter(|| codec.decode(black_box(&sealed)).expect("decode"))
        });
        // Handed over: the buffer is the decoder's to overwrite, so neither side
        // copies it first (buffers are made outside the timing).
        group.bench_function("raw-ring-aes256gcm-in-place", |b| {
            b.iter_batched(
                || sealed_raw.clone(),
                |buf| raw_open(&key, buf),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("tcodec-decode-owned", |b| {
            b.iter_batched(
                || unshared(&sealed),
                |batch| codec.decode_owned(batch).expect("decode"),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// Order-like JSON documents, as a workflow would pass them around.
fn json_payload(records: usize) -> Payload {
    let items: Vec<_> = (0..records)
        .map(|i| {
            serde_json::json!({
                "customerId": format!("cus_{:08}", i * 7919),
                "name": format!("Customer {i}"),
                "email": format!("customer{i}@example.com"),
                "address": {"street": format!("{} Market Street", i % 900), "city": "San Francisco", "zip": format!("94{:03}", i % 1000)},
                "items": [{"sku": format!("SKU-{}", i % 37), "qty": i % 5 + 1, "price": (i % 97) as f64 + 0.99}],
                "status": if i % 3 == 0 { "PENDING" } else { "SHIPPED" },
            })
        })
        .collect();
    Payload::new("json/plain", serde_json::to_vec(&items).expect("json"))
}

fn json(c: &mut Criterion) {
    let on = codec(Compression::default());
    let off = codec(Compression::Off);
    let mut group = c.benchmark_group("json");
    for records in [10usize, 1000] {
        let payload = vec![json_payload(records)];
        let len = payload[0].data.len();
        group.throughput(Throughput::Bytes(len as u64));
        for (name, codec) in [("zstd", &on), ("off", &off)] {
            group.bench_with_input(
                BenchmarkId::new(format!("encode-{name}"), len),
                &payload,
                |b, p| b.iter(|| codec.encode(black_box(p)).expect("encode")),
            );
            let sealed = codec.encode(&payload).expect("encode");
            group.bench_with_input(
                BenchmarkId::new(format!("decode-{name}"), len),
                &sealed,
                |b, p| b.iter(|| codec.decode(black_box(p)).expect("decode")),
            );
        }
        let sealed = on.encode(&payload).expect("encode");
        // Written for report.py: the size the server stores, with compression on.
        println!(
            "json-size records={records} plain={len} sealed={}",
            sealed[0].data.len()
        );
    }
    group.finish();
}

/// `ring` against RustCrypto's `aes-gcm`, each with its key set up per message: why tcodec
/// seals with `ring` (BENCHMARKS.md, "Python and Node packages").
fn aes_gcm_implementations(c: &mut Criterion) {
    // `raw_key`'s key, for RustCrypto's cipher.
    let key = [0x42; 32];
    for (size, label) in [SIZES[1], SIZES[2]] {
        let mut group = c.benchmark_group(format!("aes-gcm/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = bytes(size);
        group.bench_function("ring", |b| {
            b.iter(|| {
                raw_key()
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([7; 12]),
                        Aad::empty(),
                        black_box(&mut buf),
                    )
                    .expect("seal")
            })
        });
        group.bench_function("rustcrypto-aes-gcm", |b| {
            b.iter(|| {
                aes_gcm::Aes256Gcm::new(&key.into())
                    .encrypt_inout_detached(
                        &[7; 12].into(),
                        b"",
                        black_box(buf.as_mut_slice()).into(),
                    )
                    .expect("seal")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, seal_and_open, json, aes_gcm_implementations);
criterion_main!(benches);
