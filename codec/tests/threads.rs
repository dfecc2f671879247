//! `CodecOptions::threads`: a large batch's encoding, when it compresses, is
//! split across threads, and the answers (payloads, and the first failing
//! payload's error) are those of one thread. Decoding, and encoding without
//! compression (or of bytes that look random), stay on one thread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use sha3::Shake128;
use sha3::digest::{ExtendableOutput, Update, XofReader};

use tcodec::keys::{DataKey, KeyError, KeyId, KeySource, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecError, CodecOptions, Compression, PARALLEL_MIN_BYTES, Payload};

/// The keyring, noting each time it is asked for a key and on which thread:
/// each run of a split batch asks once, on the thread that works on it.
#[derive(Debug)]
struct Watched {
    ring: MemoryKeyring,
    asked: Mutex<Vec<ThreadId>>,
}

impl Watched {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            ring: MemoryKeyring::with_primary(
                KeyId::new("k1").unwrap(),
                SecretBytes32::new([0x22; 32]),
            ),
            asked: Mutex::new(Vec::new()),
        })
    }

    fn note(&self) {
        self.asked.lock().unwrap().push(std::thread::current().id());
    }

    /// Since the last call: how many runs asked (one each), and on how many
    /// threads.
    fn take(&self) -> (usize, usize) {
        let asked = std::mem::take(&mut *self.asked.lock().unwrap());
        let threads: HashSet<_> = asked.iter().collect();
        (asked.len(), threads.len())
    }

    /// Asserts that the work since the last call was split into `runs` runs,
    /// on more than one thread when there were several.
    fn split_into(&self, runs: usize) {
        let (asked, threads) = self.take();
        assert_eq!(asked, runs, "runs");
        if runs == 1 {
            assert_eq!(threads, 1);
        } else {
            // Rayon's pool has as many threads as the machine has cores: at
            // least the caller's and one of the pool's.
            assert!(threads >= 2, "{runs} runs on {threads} thread(s)");
        }
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
                // SHAKE128's output: bytes zstd cannot shrink.
                let mut shake = Shake128::default();
                shake.update(&(i as u64).to_le_bytes());
                let mut bytes = vec![0; size];
                shake.finalize_xof().read(&mut bytes);
                bytes
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
    keys.split_into(4);
    assert_eq!(sealed.len(), plain.len());
    // Every payload sealed on its own nonce, whichever thread sealed it.
    let nonces: HashSet<_> = sealed.iter().map(|p| p.data[..40].to_vec()).collect();
    assert_eq!(nonces.len(), plain.len());
    // Decoding is not split.
    assert_eq!(four.decode_owned(sealed.clone()).unwrap(), plain);
    keys.split_into(1);
    assert_eq!(one.decode_owned(sealed).unwrap(), plain);
    keys.split_into(1);
    let resealed = one.encode(&plain).unwrap();
    keys.split_into(1);
    assert_eq!(four.decode_owned(resealed).unwrap(), plain);
    keys.split_into(1);
}

#[test]
fn small_batches_uncompressed_encoding_random_bytes_and_the_default_stay_on_one_thread() {
    let keys = Watched::new();
    codec(&keys, 4).encode(&batch(16, 1 << 10)).unwrap();
    keys.split_into(1); // under PARALLEL_MIN_BYTES

    let large = batch(16, 64 << 10);
    let plain = Codec::with_options(
        Arc::clone(&keys) as Arc<dyn KeySource>,
        CodecOptions::default()
            .with_threads(4)
            .with_compression(Compression::Off),
    );
    plain.encode(&large).unwrap();
    keys.split_into(1); // no compression, nothing worth a second core

    // Compression on, but every payload's bytes look random: zstd is not
    // tried on them (compress.rs), so there is nothing to share either.
    let random: Vec<Payload> = batch(32, 64 << 10).into_iter().skip(1).step_by(2).collect();
    let sealed = codec(&keys, 4).encode(&random).unwrap();
    keys.split_into(1);
    assert_eq!(codec(&keys, 1).decode_owned(sealed).unwrap(), random);
    keys.split_into(1);

    let default = Codec::with_options(
        Arc::clone(&keys) as Arc<dyn KeySource>,
        CodecOptions::default(),
    );
    let sealed = default.encode(&large).unwrap();
    keys.split_into(1); // one thread unless asked
    assert_eq!(default.decode_owned(sealed).unwrap(), large);
}

#[test]
fn serialized_payloads_are_split_too_and_a_non_payload_is_named() {
    use prost::Message;
    let keys = Watched::new();
    let plain = batch(16, 64 << 10);
    let mut serialized: Vec<Vec<u8>> = plain.iter().map(Message::encode_to_vec).collect();
    for threads in [1, 4] {
        let codec = codec(&keys, threads);
        let borrowed: Vec<&[u8]> = serialized.iter().map(Vec::as_slice).collect();
        let sealed = codec.encode_serialized(&borrowed).unwrap();
        keys.split_into(threads);
        assert_eq!(codec.decode_owned(sealed).unwrap(), plain);
        keys.split_into(1);
    }
    // Payload 10 is no Payload message (a field of wire type 7 does not exist).
    serialized[10] = vec![0x0f, 0x01];
    let borrowed: Vec<&[u8]> = serialized.iter().map(Vec::as_slice).collect();
    for threads in [1, 4] {
        let err = codec(&keys, threads)
            .encode_serialized(&borrowed)
            .unwrap_err();
        assert!(
            matches!(err, CodecError::NotAPayload { index: 10 }),
            "expected payload 10 named, got {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "payload 10: not a serialized Payload message"
        );
    }
}
