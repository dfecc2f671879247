//! `CodecOptions::threads`: a large batch is split across threads, and the
//! answers (payloads, and the first failing payload's error) are those of
//! one thread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use tcodec::keys::{DataKey, KeyError, KeyId, KeySource, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecError, CodecOptions, PARALLEL_MIN_BYTES, Payload};

/// The keyring, noting which threads asked it for keys: each run of a split
/// batch asks once, on the thread that works on it.
#[derive(Debug)]
struct Watched {
    ring: MemoryKeyring,
    threads: Mutex<HashSet<ThreadId>>,
}

impl Watched {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            ring: MemoryKeyring::with_primary(
                KeyId::new("k1").unwrap(),
                SecretBytes32::new([0x22; 32]),
            ),
            threads: Mutex::new(HashSet::new()),
        })
    }

    fn note(&self) {
        self.threads
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
    }

    /// How many threads asked since the last call.
    fn take(&self) -> usize {
        std::mem::take(&mut *self.threads.lock().unwrap()).len()
    }
}

impl KeySource for Watched {
    fn primary(&self) -> Result<Arc<DataKey>, KeyError> {
        self.note();
        self.ring.primary()
    }

    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError> {
        self.note();
        self.ring.key(id)
    }
}

fn codec(keys: &Arc<Watched>, threads: usize) -> Codec {
    Codec::with_options(
        Arc::clone(keys) as Arc<dyn KeySource>,
        CodecOptions::default().with_threads(threads),
    )
}

/// `n` payloads of `size` bytes each, compressible and not, all different.
fn batch(n: usize, size: usize) -> Vec<Payload> {
    (0..n)
        .map(|i| {
            let data: Vec<u8> = if i % 2 == 0 {
                format!("{{\"order\":{i},\"note\":\"paid\"}}")
                    .repeat(size / 24 + 1)
                    .into_bytes()
            } else {
                // xorshift: bytes zstd cannot shrink.
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ i as u64;
                (0..size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            };
            Payload::new("json/plain", data[..size].to_vec())
        })
        .collect()
}

#[test]
fn a_large_batch_is_split_across_threads_and_reads_the_same() {
    let keys = Watched::new();
    let (one, four) = (codec(&keys, 1), codec(&keys, 4));
    let plain = batch(16, 64 << 10);
    assert!(plain.iter().map(|p| p.data.len()).sum::<usize>() >= PARALLEL_MIN_BYTES);

    let sealed = four.encode(&plain).unwrap();
    assert_eq!(keys.take(), 4, "four runs, each on its own thread");
    assert_eq!(sealed.len(), plain.len());
    // Every payload sealed on its own nonce, whichever thread sealed it.
    let nonces: HashSet<_> = sealed.iter().map(|p| p.data[..40].to_vec()).collect();
    assert_eq!(nonces.len(), plain.len());

    assert_eq!(one.decode_owned(sealed.clone()).unwrap(), plain);
    assert_eq!(keys.take(), 1);
    assert_eq!(four.decode_owned(sealed).unwrap(), plain);
    assert_eq!(keys.take(), 4);
    assert_eq!(
        four.decode_owned(one.encode(&plain).unwrap()).unwrap(),
        plain
    );
}

#[test]
fn small_batches_and_the_default_stay_on_one_thread() {
    let keys = Watched::new();
    let small = batch(16, 1 << 10);
    let sealed = codec(&keys, 4).encode(&small).unwrap();
    keys.take();
    assert_eq!(codec(&keys, 4).decode_owned(sealed).unwrap(), small);
    assert_eq!(keys.take(), 1, "under PARALLEL_MIN_BYTES: one thread");

    let large = batch(16, 64 << 10);
    let default = Codec::with_options(
        Arc::clone(&keys) as Arc<dyn KeySource>,
        CodecOptions::default(),
    );
    let sealed = default.encode(&large).unwrap();
    assert_eq!(keys.take(), 1, "one thread unless asked");
    assert_eq!(default.decode_owned(sealed).unwrap(), large);
}

#[test]
fn a_split_batch_names_the_first_failing_payload_as_one_thread_does() {
    let keys = Watched::new();
    let (one, four) = (codec(&keys, 1), codec(&keys, 4));
    let mut sealed = four.encode(&batch(16, 64 << 10)).unwrap();
    // Four runs of four. Payloads 9 and 13 tampered (the last two runs), 5
    // left plaintext (the second run; a strict codec refuses it): the first
    // failure is 5's.
    for i in [9, 13] {
        let mut data = sealed[i].data.to_vec();
        let last = data.len() - 1;
        data[last] ^= 1;
        sealed[i].data = data.into();
    }
    sealed[5] = batch(6, 64 << 10).remove(5);
    for codec in [&one, &four] {
        match codec.decode_owned(sealed.clone()) {
            Err(CodecError::NotSealed { index, .. }) => assert_eq!(index, 5),
            other => panic!("expected payload 5 refused, got {other:?}"),
        }
    }
    sealed[5] = four.encode(&batch(6, 64 << 10)[5..]).unwrap().remove(0);
    for codec in [&one, &four] {
        let err = codec.decode_owned(sealed.clone()).unwrap_err();
        assert!(
            matches!(err, CodecError::Decrypt { index: 9, .. }),
            "expected payload 9 named, got {err:?}"
        );
    }
}
