//! The batch codec: what a worker and the codec server call.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use tcodec_keys::{DataKey, KeyId, KeySource};

use crate::compress::{self, Compression, DecompressError};
use crate::error::{CodecError, Malformed};
use crate::legacy;
use crate::payload::{ExternalPayloadDetails, Payload};
use crate::policy::DecodePolicy;
use crate::view::PayloadView;
use crate::wire::{self, Header, HeaderError, HeaderView, MAX_LAYERS};
use crate::xaes::{NONCE_LEN, TAG_LEN, Xaes256Gcm};

/// Batches up to this size draw their nonces into a buffer on the stack.
const SMALL_BATCH: usize = 8;

/// Settings of a [`Codec`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecOptions {
    /// Compression before encryption. See [`Compression`] for the side channel.
    pub compression: Compression,
    /// The most bytes one payload may decode (decrypt, decompress) to. Guards
    /// against decompression bombs. Default 64 MiB, far above Temporal's own
    /// payload size limits.
    pub max_decoded_size: usize,
    /// Which payloads not sealed by tcodec decoding accepts (plaintext,
    /// the samples' legacy formats). Default: none.
    pub policy: DecodePolicy,
    /// Whether decoding a compressed layer is left to the caller to redo
    /// elsewhere ([`CodecError::Deferred`]). Decompression is the one step
    /// whose time the input's size does not bound (up to `max_decoded_size`
    /// per payload): a caller that must answer within microseconds, such as
    /// the codec server on its async workers, sets this and moves deferred
    /// batches to a thread that may take longer. Default off.
    pub defer_decompression: bool,
    /// The most threads one call of [`Codec::encode`] or
    /// [`Codec::encode_serialized`] works on when it compresses: a batch of
    /// two payloads or more holding at least [`PARALLEL_MIN_BYTES`] of data
    /// is split into that many runs of consecutive payloads (fewer where the
    /// batch is smaller), all but the first on rayon's global pool (one
    /// thread per core). The output, and the error when a payload fails (the
    /// first failing payload's), are those of one thread. Only compression
    /// is split: it costs ~100 µs per 64 KiB, where a second core pays; the
    /// rest (AES-GCM, copies, decompression) costs a few µs per 64 KiB, and
    /// measured split it was slower than on one thread (BENCHMARKS.md).
    /// Default 1: a server answering many requests at once gains nothing
    /// from it; a worker's codec, with one batch at a time and idle cores,
    /// does (see [`available_threads`]).
    pub threads: usize,
}

/// The least data (payloads' `data`, in bytes) a batch holds for
/// [`CodecOptions::threads`] to split it: below this, starting a thread
/// costs more than the work it would take over.
pub const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// The threads this process may run at once (its CPU quota or affinity
/// where set), read once: what a worker's codec passes to
/// [`CodecOptions::with_threads`].
pub fn available_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            compression: Compression::default(),
            max_decoded_size: 64 << 20,
            policy: DecodePolicy::strict(),
            defer_decompression: false,
            threads: 1,
        }
    }
}

impl CodecOptions {
    /// These options with `compression` set.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// These options with `max_decoded_size` set.
    pub fn with_max_decoded_size(mut self, bytes: usize) -> Self {
        self.max_decoded_size = bytes;
        self
    }

    /// These options with `policy` deciding what decoding accepts besides
    /// tcodec's own payloads.
    pub fn with_decode_policy(mut self, policy: DecodePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// These options with decompression deferred or not (see
    /// [`defer_decompression`](Self::defer_decompression)).
    pub fn with_deferred_decompression(mut self, on: bool) -> Self {
        self.defer_decompression = on;
        self
    }

    /// These options with at most `threads` threads a batch (see
    /// [`threads`](Self::threads)); 0 counts as 1.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
}

/// Encodes and decodes batches of Temporal payloads.
///
/// Encoding serializes each payload whole (metadata included), compresses it
/// when that pays, and seals it with XAES-256-GCM under the keyring's primary
/// key. Decoding reverses that for tcodec payloads, decodes the official
/// samples' legacy formats, and passes every other payload through untouched.
///
/// A `Codec` is cheap to share: wrap it in an [`Arc`] and call it from any
/// number of threads.
#[derive(Debug)]
pub struct Codec {
    keys: Arc<dyn KeySource>,
    options: CodecOptions,
    rng: SystemRandom,
}

/// A layer the codec opens, by the payload's `encoding`. A payload of any
/// other encoding is no layer of the codec's (`None` where a `Layer` is
/// asked for) and is passed through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layer {
    Tcodec,
    LegacyEncrypted,
    LegacyZlib,
}

impl Codec {
    /// A codec with default options over `keys`.
    pub fn new(keys: Arc<dyn KeySource>) -> Self {
        Self::with_options(keys, CodecOptions::default())
    }

    /// A codec with the given options over `keys`.
    pub fn with_options(keys: Arc<dyn KeySource>, options: CodecOptions) -> Self {
        Self {
            keys,
            options,
            rng: SystemRandom::new(),
        }
    }

    /// The codec's options.
    pub fn options(&self) -> &CodecOptions {
        &self.options
    }

    /// Encodes a batch under the primary key. The output has one payload per
    /// input payload, in order.
    pub fn encode(&self, payloads: &[Payload]) -> Result<Vec<Payload>, CodecError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let lanes = self.lanes(payloads);
        if lanes > 1 {
            return self.encode_split(payloads, lanes, |encoder, index, payload| {
                encoder.encode(index, payload)
            });
        }
        let key = self.primary()?;
        let cipher = Xaes256Gcm::new(key.secret());
        // One draw from the system CSPRNG for the whole batch; a small batch's
        // nonces live on the stack.
        let mut small = [0u8; NONCE_LEN * SMALL_BATCH];
        let mut large = Vec::new();
        let nonces = match payloads.len() {
            n if n <= SMALL_BATCH => &mut small[..NONCE_LEN * n],
            n => {
                large.resize(NONCE_LEN * n, 0);
                &mut large[..]
            }
        };
        self.rng.fill(nonces).map_err(|_| CodecError::Random)?;
        payloads
            .iter()
            .zip(nonces.chunks_exact(NONCE_LEN))
            .enumerate()
            .map(|(index, (payload, nonce))| {
                let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| CodecError::Random)?;
                self.encode_one(index, Inner::Payload(payload), &cipher, key.id(), nonce)
            })
            .collect()
    }

    /// [`encode`](Self::encode) for a batch the caller holds serialized (a
    /// language binding's payloads): each is checked to be a `Payload` message
    /// ([`CodecError::NotAPayload`] otherwise) and, in the shape every
    /// Temporal SDK writes, sealed as it is, without being parsed into a
    /// [`Payload`] and serialized again; anything else is sealed as
    /// [`encode`](Self::encode) would seal it. Decoding gives the payload
    /// back; its serialized form may differ from what came in only where
    /// prost's would (map order, repeated keys).
    pub fn encode_serialized(&self, payloads: &[&[u8]]) -> Result<Vec<Payload>, CodecError> {
        let lanes = self.lanes_for(payloads.iter().copied());
        self.encode_split(payloads, lanes, |encoder, index, payload| {
            encoder.encode_serialized(index, payload)
        })
    }

    /// Seals `payloads` in `lanes` runs of consecutive payloads (see
    /// [`in_parallel`]), each with its own [`Encoder`], `seal` sealing one
    /// payload by its index in the batch.
    fn encode_split<T: Sync>(
        &self,
        payloads: &[T],
        lanes: usize,
        seal: impl Fn(&mut Encoder<'_>, usize, &T) -> Result<Payload, CodecError> + Sync,
    ) -> Result<Vec<Payload>, CodecError> {
        let runs = split_runs(payloads.len(), lanes)
            .map(|range| (range.start, &payloads[range]))
            .collect();
        in_parallel(runs, |start, run| {
            let mut encoder = self.encoder(run.len())?;
            run.iter()
                .enumerate()
                .map(|(i, payload)| seal(&mut encoder, start + i, payload))
                .collect()
        })
    }

    /// The primary key, to encode under.
    fn primary(&self) -> Result<Arc<DataKey>, CodecError> {
        self.keys.primary().map_err(|source| CodecError::Key {
            index: 0,
            key_id: "primary".to_owned(),
            source,
        })
    }

    /// An [`Encoder`] for one batch whose payloads the caller hands over one
    /// at a time, `expected` of them (a hint for how many nonces to draw at
    /// once).
    pub fn encoder(&self, expected: usize) -> Result<Encoder<'_>, CodecError> {
        let key = self.primary()?;
        Ok(Encoder {
            codec: self,
            cipher: Xaes256Gcm::new(key.secret()),
            key,
            nonces: [0; NONCE_LEN * NONCE_POOL],
            next: NONCE_LEN * NONCE_POOL,
            remaining: expected,
        })
    }

    /// The payload compressed, when compression is on, the payload is large
    /// enough, its bytes do not look random and zstd makes it smaller.
    fn compressed(&self, payload: Inner<'_>) -> Option<Vec<u8>> {
        match self.options.compression {
            Compression::Zstd { level, min_size } if payload.len() >= min_size => {
                let inner = payload.bytes();
                if compress::looks_incompressible(&inner) {
                    return None;
                }
                // A failure to compress is no reason to fail the payload.
                compress::zstd_compress(&inner, level)
                    .ok()
                    .filter(|packed| packed.len() < inner.len())
            }
            _ => None,
        }
    }

    fn encode_one(
        &self,
        index: usize,
        payload: Inner<'_>,
        cipher: &Xaes256Gcm,
        key_id: &KeyId,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Payload, CodecError> {
        let inner_len = payload.len();
        let compressed = self.compressed(payload);
        let header = Header {
            key_id: key_id.clone(),
            zstd: compressed.is_some(),
        };
        let sealed = match &compressed {
            Some(packed) => wire::seal(cipher, &header, nonce, packed),
            None => wire::seal_with(cipher, &header, nonce, inner_len, |out| payload.write(out)),
        };
        let data = sealed.map_err(|_| CodecError::Seal {
            index,
            key_id: key_id.to_string(),
        })?;
        Ok(sealed_payload(key_id, data.into()))
    }

    /// Decodes a batch. tcodec and (unless switched off) legacy payloads are
    /// decoded; all others are returned as they came. The output has one payload
    /// per input payload, in order. The first payload that fails fails the batch.
    pub fn decode(&self, payloads: &[Payload]) -> Result<Vec<Payload>, CodecError> {
        self.decode_all(payloads.iter().map(Cow::Borrowed))
    }

    /// [`decode`](Self::decode) for a batch the caller hands over, as the codec
    /// server and a worker's payload codec can: a payload's data that nothing
    /// else shares is decrypted where it is, without the copy `decode` makes,
    /// and payloads passed through move instead of being cloned. The output is
    /// the same as `decode`'s. On error the batch is gone; call `decode` to keep
    /// it.
    pub fn decode_owned(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        self.decode_all(payloads.into_iter().map(Cow::Owned))
    }

    /// Decodes a batch, borrowed or owned, with one cipher per key id.
    fn decode_all<'a>(
        &self,
        payloads: impl Iterator<Item = Cow<'a, Payload>>,
    ) -> Result<Vec<Payload>, CodecError> {
        let mut batch = Batch::default();
        payloads
            .enumerate()
            .map(|(index, payload)| self.decode_layers(index, payload, &mut batch, 0))
            .collect()
    }

    /// How many threads to split `payloads` over (1: none).
    fn lanes(&self, payloads: &[Payload]) -> usize {
        self.lanes_for(payloads.iter().map(|p| &p.data[..]))
    }

    /// How many threads to split the encoding of a batch over (1: none), the
    /// batch's payloads (or their data) in `payloads`. Only what zstd will be
    /// tried on counts: sealing alone measured slower split (BENCHMARKS.md).
    fn lanes_for<'p>(&self, payloads: impl ExactSizeIterator<Item = &'p [u8]> + Clone) -> usize {
        let compresses = matches!(self.options.compression, Compression::Zstd { .. });
        let count = payloads.len();
        let all: usize = payloads.clone().map(<[u8]>::len).sum();
        if !compresses || self.options.threads <= 1 || count < 2 || all < PARALLEL_MIN_BYTES {
            return 1;
        }
        let bytes: usize = payloads
            .filter(|p| !compress::looks_incompressible(p))
            .map(<[u8]>::len)
            .sum();
        if bytes < PARALLEL_MIN_BYTES {
            return 1;
        }
        // Each thread gets at least half the minimum's worth of data.
        self.options
            .threads
            .min(count)
            .min(bytes / (PARALLEL_MIN_BYTES / 2))
    }

    /// A [`Decoder`] for one batch whose payloads the caller holds in its own
    /// form, as the codec server holds JSON.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            codec: self,
            batch: Batch::default(),
        }
    }

    /// Whether [`decode`](Self::decode) does anything but hand back a
    /// payload whose `encoding` metadata is `encoding` (`None`: it has none):
    /// decode a layer, or refuse what the decode policy refuses. Payloads it
    /// hands back come back as they went in, so a caller holding them in
    /// another form (the codec server, with JSON) may keep them there.
    pub fn decodes(&self, encoding: Option<&[u8]>) -> bool {
        self.layer_of(encoding).is_some() || !self.options.policy.allows_plaintext(encoding)
    }

    /// The layer a payload of `encoding` is, if the policy lets the codec
    /// open it.
    fn layer_of(&self, encoding: Option<&[u8]>) -> Option<Layer> {
        let policy = &self.options.policy;
        Some(match encoding {
            Some(e) if e == wire::ENCODING.as_bytes() => Layer::Tcodec,
            Some(e) if policy.legacy_encrypted && e == legacy::ENCODING_ENCRYPTED.as_bytes() => {
                Layer::LegacyEncrypted
            }
            Some(e) if policy.zlib && e == legacy::ENCODING_ZLIB.as_bytes() => Layer::LegacyZlib,
            _ => return None,
        })
    }

    /// A payload, stored as it is, that is no layer the codec may open: handed
    /// back if the policy lets that encoding pass, refused otherwise.
    fn unsealed(&self, index: usize, payload: Cow<'_, Payload>) -> Result<Payload, CodecError> {
        let encoding = payload.encoding();
        if self.options.policy.allows_plaintext(encoding) {
            return Ok(payload.into_owned());
        }
        Err(CodecError::NotSealed {
            index,
            encoding: String::from_utf8_lossy(encoding.unwrap_or_default()).into_owned(),
        })
    }

    /// Decodes one payload's layers; `from` is how many layers were already
    /// opened. A payload of no encoding the codec works on is the result.
    fn decode_layers(
        &self,
        index: usize,
        mut current: Cow<'_, Payload>,
        batch: &mut Batch,
        from: usize,
    ) -> Result<Payload, CodecError> {
        let mut depth = from;
        loop {
            let Some(layer) = self.layer_of(current.encoding()) else {
                // What a layer held was sealed with it; only what was stored
                // as it is answers to the policy.
                return if depth == 0 {
                    self.unsealed(index, current)
                } else {
                    Ok(current.into_owned())
                };
            };
            if depth == MAX_LAYERS {
                return Err(CodecError::Malformed {
                    index,
                    encoding: wire::ENCODING,
                    reason: Malformed::TooDeep,
                });
            }
            let (encoding, inner) = match layer {
                Layer::LegacyEncrypted => (
                    legacy::ENCODING_ENCRYPTED,
                    Bytes::from(self.open_legacy_encrypted(index, &current, &mut batch.budget)?),
                ),
                Layer::LegacyZlib => {
                    self.may_decompress(index)?;
                    let limit = batch.budget.limit(self.options.max_decoded_size);
                    let inflated =
                        compress::zlib_decompress(&current.data, limit).map_err(|e| {
                            self.decompress_error(index, legacy::ENCODING_ZLIB, e, &batch.budget)
                        })?;
                    batch.budget.spend(inflated.len());
                    (legacy::ENCODING_ZLIB, Bytes::from(inflated))
                }
                Layer::Tcodec => (wire::ENCODING, self.open_tcodec(index, current, batch)?),
            };
            // `data` becomes a view of the plaintext buffer, not a copy.
            let decoded = Payload::decode(inner).map_err(|_| CodecError::Malformed {
                index,
                encoding,
                reason: Malformed::InnerPayload,
            })?;
            current = Cow::Owned(decoded);
            depth += 1;
        }
    }

    fn decompress_error(
        &self,
        index: usize,
        encoding: &'static str,
        e: DecompressError,
        budget: &Budget,
    ) -> CodecError {
        match e {
            DecompressError::TooLarge => budget.exceeded(index, self.options.max_decoded_size),
            DecompressError::Corrupt => CodecError::Malformed {
                index,
                encoding,
                reason: Malformed::Compression,
            },
        }
    }

    /// Opens one tcodec layer, returning the serialized inner payload.
    fn open_tcodec(
        &self,
        index: usize,
        payload: Cow<'_, Payload>,
        batch: &mut Batch,
    ) -> Result<Bytes, CodecError> {
        let outer = Outer {
            metadata: &payload.metadata,
            external_payloads: !payload.external_payloads.is_empty(),
        };
        let (cipher, header_len, zstd) =
            self.tcodec_cipher(index, outer, &payload.data, &mut batch.ciphers)?;
        let (key_id, cipher) = cipher;
        // A payload the caller handed over is decrypted in its own buffer.
        let plaintext = match payload {
            Cow::Owned(payload) => wire::open_owned(cipher, payload.data, header_len),
            Cow::Borrowed(payload) => {
                wire::open(cipher, &payload.data, header_len).map(Bytes::from)
            }
        }
        .map_err(|_| decrypt_error(index, key_id))?;
        Ok(self
            .inflate(index, zstd, &plaintext, &mut batch.budget)?
            .unwrap_or(plaintext))
    }

    /// What follows the decryption of a tcodec layer, wherever it was
    /// decrypted: the plaintext decompressed when the header says so
    /// (`Some`), else checked against the size limit and used as it is
    /// (`None`).
    fn inflate(
        &self,
        index: usize,
        zstd: bool,
        plaintext: &[u8],
        budget: &mut Budget,
    ) -> Result<Option<Bytes>, CodecError> {
        if zstd {
            return self.zstd_decompress(index, plaintext, budget).map(Some);
        }
        self.check_size(index, plaintext.len(), budget)?;
        Ok(None)
    }

    /// Everything before a tcodec layer is decrypted: the outer payload's
    /// checks, its header, and the cipher of the key it names. Returns the
    /// cipher, the header's length and whether the plaintext is compressed.
    fn tcodec_cipher<'c, M: Metadata + ?Sized>(
        &self,
        index: usize,
        outer: Outer<'_, M>,
        data: &[u8],
        ciphers: &'c mut Ciphers,
    ) -> Result<(&'c (KeyId, Xaes256Gcm), usize, bool), CodecError> {
        let malformed = |reason| CodecError::Malformed {
            index,
            encoding: wire::ENCODING,
            reason,
        };
        // FORMAT.md section 4.1 fixes this order: the header first (so a
        // later version's payload is refused as such, whatever else it
        // carries), then the outer payload's fields, then the key.
        let (header, header_len) =
            HeaderView::parse(data).map_err(|e| malformed(Malformed::Header(e)))?;
        if outer.external_payloads {
            return Err(malformed(Malformed::ExternalPayloads));
        }
        if !outer
            .metadata
            .only_keys(&[wire::METADATA_ENCODING, wire::METADATA_KEY_ID])
        {
            return Err(malformed(Malformed::UnexpectedMetadata));
        }
        if outer.metadata.value(wire::METADATA_KEY_ID) != Some(header.key_id.as_bytes()) {
            return Err(malformed(Malformed::KeyIdMismatch));
        }
        let cipher = ciphers.get(self, index, header.key_id)?;
        Ok((cipher, header_len, header.zstd))
    }

    /// Refuses to decompress when the options defer it.
    fn may_decompress(&self, index: usize) -> Result<(), CodecError> {
        if self.options.defer_decompression {
            return Err(CodecError::Deferred { index });
        }
        Ok(())
    }

    fn zstd_decompress(
        &self,
        index: usize,
        packed: &[u8],
        budget: &mut Budget,
    ) -> Result<Bytes, CodecError> {
        self.may_decompress(index)?;
        let limit = budget.limit(self.options.max_decoded_size);
        let inflated = compress::zstd_decompress(packed, limit)
            .map_err(|e| self.decompress_error(index, wire::ENCODING, e, budget))?;
        budget.spend(inflated.len());
        Ok(Bytes::from(inflated))
    }

    /// Counts `len` decoded bytes against the per-payload limit and the
    /// batch's budget.
    fn check_size(&self, index: usize, len: usize, budget: &mut Budget) -> Result<(), CodecError> {
        if len > budget.limit(self.options.max_decoded_size) {
            return Err(budget.exceeded(index, self.options.max_decoded_size));
        }
        budget.spend(len);
        Ok(())
    }

    /// Opens one `binary/encrypted` layer (the samples' format, or
    /// temporal-proxy's), returning the serialized inner payload.
    fn open_legacy_encrypted(
        &self,
        index: usize,
        payload: &Payload,
        budget: &mut Budget,
    ) -> Result<Vec<u8>, CodecError> {
        let format = legacy::Encrypted::of(payload.metadata.keys().map(String::as_str));
        let raw_id = payload.metadata.get(legacy::METADATA_KEY_ID);
        // The key id as errors show it, made only when there is an error.
        let malformed = |reason| CodecError::MalformedForeign {
            index,
            format: format.name(),
            key_id: raw_id
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .unwrap_or_default(),
            reason,
        };
        let key_id = raw_id
            .ok_or(Malformed::MissingKeyId)
            .and_then(|id| std::str::from_utf8(id).map_err(|_| Malformed::BadKeyText))
            .and_then(|id| {
                tcodec_keys::document::check_legacy_id(id)
                    .map(|()| id)
                    .map_err(|_| Malformed::BadKeyText)
            })
            .map_err(malformed)?;
        if payload.metadata.keys().any(|k| !format.defines(k)) {
            return Err(malformed(Malformed::UnexpectedMetadata));
        }
        let key_error = |source| CodecError::Key {
            index,
            key_id: key_id.to_owned(),
            source,
        };
        let opened = match format {
            legacy::Encrypted::Samples => {
                let key = self.keys.legacy_key(key_id).map_err(key_error)?;
                legacy::open_encrypted(key.secret(), &payload.data)
            }
            legacy::Encrypted::Proxy => {
                let wrapped = payload
                    .metadata
                    .get(legacy::METADATA_DEK)
                    .and_then(|w| std::str::from_utf8(w).ok())
                    .filter(|w| !w.is_empty() && w.len() <= 4096)
                    .ok_or_else(|| malformed(Malformed::BadKeyText))?;
                let key = self.keys.proxy_key(key_id, wrapped).map_err(key_error)?;
                legacy::open_encrypted(&key, &payload.data)
            }
        };
        let plaintext = opened.map_err(|e| match e {
            legacy::LegacyOpenError::Truncated => malformed(Malformed::Truncated),
            legacy::LegacyOpenError::Decrypt => CodecError::Decrypt {
                index,
                key_id: key_id.to_owned(),
            },
        })?;
        self.check_size(index, plaintext.len(), budget)?;
        Ok(plaintext)
    }
}

/// A tcodec layer that did not authenticate under the key it names.
fn decrypt_error(index: usize, key_id: &KeyId) -> CodecError {
    CodecError::Decrypt {
        index,
        key_id: key_id.to_string(),
    }
}

/// What one batch's decoding keeps between payloads: the ciphers of the key
/// versions it uses, and what it may still decode.
#[derive(Default)]
struct Batch {
    ciphers: Ciphers,
    budget: Budget,
}

/// What a batch may still decode: the bytes decryption and decompression
/// produce, summed over its payloads and their layers ([`Decoder::with_budget`]).
#[derive(Debug, Clone, Copy)]
struct Budget {
    left: usize,
    /// The whole budget; `None`: unlimited.
    total: Option<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            left: usize::MAX,
            total: None,
        }
    }
}

impl Budget {
    /// The most one step may produce: the per-payload limit or what is left
    /// of the budget, the smaller.
    fn limit(&self, per_payload: usize) -> usize {
        per_payload.min(self.left)
    }

    fn spend(&mut self, bytes: usize) {
        self.left = self.left.saturating_sub(bytes);
    }

    /// The error for a step that would produce more than [`Budget::limit`].
    fn exceeded(&self, index: usize, per_payload: usize) -> CodecError {
        match self.total {
            Some(budget) if self.left < per_payload => CodecError::OverBudget { index, budget },
            _ => CodecError::TooLarge {
                index,
                limit: per_payload,
            },
        }
    }
}

/// The ciphers of the key versions one batch uses, each set up once.
#[derive(Default)]
struct Ciphers(Vec<(KeyId, Xaes256Gcm)>);

impl Ciphers {
    /// The cipher of `key_id`, fetched from the key source on first use.
    fn get(
        &mut self,
        codec: &Codec,
        index: usize,
        key_id: &str,
    ) -> Result<&(KeyId, Xaes256Gcm), CodecError> {
        if let Some(position) = self.0.iter().position(|(id, _)| id.as_str() == key_id) {
            return Ok(&self.0[position]);
        }
        let id = KeyId::new(key_id).map_err(|_| CodecError::Malformed {
            index,
            encoding: wire::ENCODING,
            reason: Malformed::Header(HeaderError::InvalidKeyId),
        })?;
        let key = codec.keys.key(&id).map_err(|source| CodecError::Key {
            index,
            key_id: key_id.to_owned(),
            source,
        })?;
        self.0.push((id, Xaes256Gcm::new(key.secret())));
        Ok(&self.0[self.0.len() - 1])
    }
}

/// A payload's metadata, as the codec's checks read it: a map, or the
/// pairs a caller holds (where, as in a map, the last of a repeated key counts).
trait Metadata {
    /// Whether every key is one of `allowed`.
    fn only_keys(&self, allowed: &[&str]) -> bool;
    /// The value of `key`.
    fn value(&self, key: &str) -> Option<&[u8]>;
}

impl Metadata for BTreeMap<String, Vec<u8>> {
    fn only_keys(&self, allowed: &[&str]) -> bool {
        self.keys().all(|k| allowed.contains(&k.as_str()))
    }
    fn value(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(Vec::as_slice)
    }
}

impl Metadata for [(&str, &[u8])] {
    fn only_keys(&self, allowed: &[&str]) -> bool {
        self.iter().all(|(k, _)| allowed.contains(k))
    }
    fn value(&self, key: &str) -> Option<&[u8]> {
        self.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// `len` consecutive indices in `lanes` runs, as even as can be, in order.
fn split_runs(len: usize, lanes: usize) -> impl DoubleEndedIterator<Item = Range<usize>> {
    let (each, extra) = (len / lanes, len % lanes);
    (0..lanes).map(move |lane| {
        let start = lane * each + lane.min(extra);
        start..start + each + usize::from(lane < extra)
    })
}

/// Runs `work` over each of `runs` (its first index in the batch, its
/// payloads), the first on this thread and the others on rayon's pool (its
/// threads live on, so each keeps its compression context and its
/// allocator's memory from one batch to the next), and joins the outputs in
/// order. Runs are consecutive, so the first run that failed holds the
/// batch's first failing payload: its error is the answer, as one thread
/// would have given it. A run that panics panics here.
fn in_parallel<T, F>(runs: Vec<(usize, T)>, work: F) -> Result<Vec<Payload>, CodecError>
where
    T: Send,
    F: Fn(usize, T) -> Result<Vec<Payload>, CodecError> + Sync,
{
    let mut outputs: Vec<Option<Result<Vec<Payload>, CodecError>>> =
        std::iter::repeat_with(|| None).take(runs.len()).collect();
    let work = &work;
    rayon::in_place_scope(|scope| {
        let mut slots = outputs.iter_mut();
        let mut runs = runs.into_iter();
        let first = runs.next().zip(slots.next());
        for ((start, run), slot) in runs.zip(slots) {
            scope.spawn(move |_| *slot = Some(work(start, run)));
        }
        if let Some(((start, run), slot)) = first {
            *slot = Some(work(start, run));
        }
    });
    let mut all = Vec::new();
    for output in outputs.into_iter().flatten() {
        all.extend(output?);
    }
    Ok(all)
}

/// The parts of an outer payload the checks before decryption read.
struct Outer<'a, M: ?Sized> {
    metadata: &'a M,
    external_payloads: bool,
}

/// A payload as a caller holds it, apart from its data: what
/// [`Decoder::decode_in_place`] reads. `Debug` shows metadata keys, not
/// values.
#[derive(Clone, Copy)]
pub struct PayloadParts<'a> {
    /// Metadata pairs in the order the caller has them. Of a key given more
    /// than once the last counts, as in a map.
    pub metadata: &'a [(&'a str, &'a [u8])],
    /// External payload details.
    pub external_payloads: &'a [ExternalPayloadDetails],
}

impl fmt::Debug for PayloadParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.metadata.iter().map(|(k, _)| *k).collect();
        f.debug_struct("PayloadParts")
            .field("metadata_keys", &keys)
            .field("external_payloads", &self.external_payloads.len())
            .finish()
    }
}

impl PayloadParts<'_> {
    /// The whole payload, its data copied from `data`.
    pub fn to_payload(self, data: &[u8]) -> Payload {
        let mut metadata = BTreeMap::new();
        for (k, v) in self.metadata {
            metadata.insert((*k).to_owned(), v.to_vec());
        }
        Payload {
            metadata,
            data: Bytes::copy_from_slice(data),
            external_payloads: self.external_payloads.to_vec(),
        }
    }
}

/// A payload [`Decoder::decode_in_place`] decoded.
#[derive(Debug)]
// The view is larger than a `Payload` (its metadata is an array on the
// stack); boxing it would cost the allocation per payload it exists to save.
#[allow(clippy::large_enum_variant)]
pub enum Decoded<'a> {
    /// Read where it was decrypted, in the caller's buffer: the common case
    /// (one tcodec layer around a payload of any other encoding).
    View(PayloadView<'a>),
    /// Decoded the general way, as [`Codec::decode`] does: legacy formats,
    /// compressed or nested layers, payloads of unusual shape.
    Owned(Payload),
}

/// Nonces an [`Encoder`] draws from the system CSPRNG at once, at most.
const NONCE_POOL: usize = 64;

/// Encodes a batch one payload at a time, as the codec server reads them from
/// a request: the primary key's cipher is set up once per encoder and nonces
/// are drawn in groups, so the output is that of [`Codec::encode`] over the
/// same payloads but for the nonces. Use one encoder per batch.
pub struct Encoder<'c> {
    codec: &'c Codec,
    key: Arc<DataKey>,
    cipher: Xaes256Gcm,
    nonces: [u8; NONCE_LEN * NONCE_POOL],
    /// Where the next unused nonce starts; past the end, the pool is spent.
    next: usize,
    /// Payloads still expected, so a small batch draws no more than it needs.
    remaining: usize,
}

impl Encoder<'_> {
    /// Seals `payload`, the one at `index` in the batch, under the primary key.
    pub fn encode(&mut self, index: usize, payload: &Payload) -> Result<Payload, CodecError> {
        self.seal(index, Inner::Payload(payload))
    }

    /// Seals the serialized payload `bytes`, the one at `index` in the batch,
    /// as [`Codec::encode_serialized`] does.
    pub fn encode_serialized(&mut self, index: usize, bytes: &[u8]) -> Result<Payload, CodecError> {
        match parsed_unless_view(index, bytes)? {
            None => self.seal(index, Inner::Serialized(bytes)),
            Some(payload) => self.seal(index, Inner::Payload(&payload)),
        }
    }

    fn seal(&mut self, index: usize, payload: Inner<'_>) -> Result<Payload, CodecError> {
        let nonce = self.nonce()?;
        self.codec
            .encode_one(index, payload, &self.cipher, self.key.id(), &nonce)
    }

    /// The next nonce from the pool, drawn from the OS when it is spent.
    fn nonce(&mut self) -> Result<[u8; NONCE_LEN], CodecError> {
        if self.next >= self.nonces.len() {
            let want = self.remaining.clamp(1, NONCE_POOL);
            let start = self.nonces.len() - NONCE_LEN * want;
            self.codec
                .rng
                .fill(&mut self.nonces[start..])
                .map_err(|_| CodecError::Random)?;
            self.next = start;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.nonces[self.next..self.next + NONCE_LEN]);
        // A nonce is used once: wipe it from the pool as it is taken.
        self.nonces[self.next..self.next + NONCE_LEN].fill(0);
        self.next += NONCE_LEN;
        self.remaining = self.remaining.saturating_sub(1);
        Ok(nonce)
    }

    /// The first of two steps that seal the serialized payload `bytes`, the
    /// one at `index` in the batch, as [`encode_serialized`](Self::encode_serialized)
    /// does, for a caller that wants the sealed payload serialized into a
    /// buffer of its own (a language binding's answer, with no copy in
    /// between): this one checks and compresses it and says how long the
    /// serialized sealed payload will be ([`Prepared::serialized_len`]);
    /// [`seal_into`](Self::seal_into) seals it into a buffer of that length.
    pub fn prepare_serialized<'b>(
        &self,
        index: usize,
        bytes: &'b [u8],
    ) -> Result<Prepared<'b>, CodecError> {
        let inner = match parsed_unless_view(index, bytes)? {
            None => Cow::Borrowed(bytes),
            Some(payload) => Cow::Owned(payload.encode_to_vec()),
        };
        let (plaintext, zstd) = match self.codec.compressed(Inner::Serialized(&inner)) {
            Some(packed) => (Cow::Owned(packed), true),
            None => (inner, false),
        };
        let header = Header {
            key_id: self.key.id().clone(),
            zstd,
        };
        let data_len = header.encoded_len() + NONCE_LEN + plaintext.len() + TAG_LEN;
        let metadata = sealed_payload(self.key.id(), Bytes::new());
        let serialized_len = metadata.encoded_len()
            + prost::encoding::key_len(2)
            + prost::encoding::encoded_len_varint(data_len as u64)
            + data_len;
        Ok(Prepared {
            index,
            plaintext,
            header,
            metadata,
            data_len,
            serialized_len,
        })
    }

    /// Seals a payload [`prepare_serialized`](Self::prepare_serialized)
    /// prepared into `out`, which must be exactly
    /// [`Prepared::serialized_len`] bytes long: `out` then holds the sealed
    /// payload, serialized, as [`encode_serialized`](Self::encode_serialized)
    /// would have returned it.
    pub fn seal_into(&mut self, prepared: Prepared<'_>, out: &mut [u8]) -> Result<(), CodecError> {
        let failed = || CodecError::Seal {
            index: prepared.index,
            key_id: prepared.header.key_id.to_string(),
        };
        if out.len() != prepared.serialized_len {
            return Err(failed());
        }
        let (plaintext, header) = (&prepared.plaintext, &prepared.header);
        let nonce = self.nonce()?;
        let mut rest: &mut [u8] = out;
        prepared.metadata.encode(&mut rest).map_err(|_| failed())?;
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut rest);
        prost::encoding::encode_varint(prepared.data_len as u64, &mut rest);
        let mut head = Vec::with_capacity(header.encoded_len());
        header.write(&mut head);
        let (aad, rest) = rest.split_at_mut_checked(head.len()).ok_or_else(failed)?;
        aad.copy_from_slice(&head);
        let (nonce_out, rest) = rest.split_at_mut_checked(NONCE_LEN).ok_or_else(failed)?;
        nonce_out.copy_from_slice(&nonce);
        let (body, tag_out) = rest
            .split_at_mut_checked(plaintext.len())
            .ok_or_else(failed)?;
        body.copy_from_slice(plaintext);
        let tag = self
            .cipher
            .seal_in_place_detached(&nonce, aad, body)
            .map_err(|_| failed())?;
        if tag_out.len() != tag.len() {
            return Err(failed());
        }
        tag_out.copy_from_slice(&tag);
        Ok(())
    }
}

/// What [`Codec::encode_one`] seals: a payload, or one the caller holds
/// serialized (checked to be a `Payload` message).
#[derive(Clone, Copy)]
enum Inner<'a> {
    Payload(&'a Payload),
    Serialized(&'a [u8]),
}

impl<'a> Inner<'a> {
    /// The serialized payload's length.
    fn len(self) -> usize {
        match self {
            Self::Payload(p) => p.encoded_len(),
            Self::Serialized(b) => b.len(),
        }
    }

    /// The serialized payload.
    fn bytes(self) -> Cow<'a, [u8]> {
        match self {
            Self::Payload(p) => Cow::Owned(p.encode_to_vec()),
            Self::Serialized(b) => Cow::Borrowed(b),
        }
    }

    /// Appends the serialized payload to `out`.
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Self::Payload(p) => p.encode_raw(out),
            Self::Serialized(b) => out.extend_from_slice(b),
        }
    }
}

/// A sealed payload: `data` under the metadata that names the format and
/// `key_id`.
fn sealed_payload(key_id: &KeyId, data: Bytes) -> Payload {
    let mut out = Payload::new(wire::ENCODING, data);
    out.metadata
        .insert(wire::METADATA_KEY_ID.to_owned(), key_id.as_bytes().to_vec());
    out
}

/// A serialized payload checked: `None` when it is in the shape every SDK
/// writes (read in place, sealed as it came), else the payload prost reads
/// from it (sealed as prost writes it); not a `Payload` at all is
/// [`CodecError::NotAPayload`].
fn parsed_unless_view(index: usize, bytes: &[u8]) -> Result<Option<Payload>, CodecError> {
    if PayloadView::parse(bytes).is_some() {
        return Ok(None);
    }
    Payload::decode(bytes)
        .map(Some)
        .map_err(|_| CodecError::NotAPayload { index })
}

/// A payload ready to be sealed into a caller's buffer
/// ([`Encoder::prepare_serialized`], [`Encoder::seal_into`]).
pub struct Prepared<'b> {
    index: usize,
    /// What is sealed: the serialized payload, or its zstd frame.
    plaintext: Cow<'b, [u8]>,
    header: Header,
    /// The sealed payload's metadata (no data).
    metadata: Payload,
    data_len: usize,
    serialized_len: usize,
}

impl Prepared<'_> {
    /// The length of the sealed payload, serialized: the buffer
    /// [`Encoder::seal_into`] takes.
    pub fn serialized_len(&self) -> usize {
        self.serialized_len
    }
}

impl fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("index", &self.index)
            .field("plaintext_len", &self.plaintext.len())
            .field("zstd", &self.header.zstd)
            .field("serialized_len", &self.serialized_len)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("key_id", self.key.id())
            .finish_non_exhaustive()
    }
}

/// Decodes a batch one payload at a time from parts the caller holds, as the
/// codec server holds the JSON of a request: each payload's data is
/// decrypted in the caller's buffer and, in the common case, read there
/// without building a [`Payload`] (see [`Decoded`]). The answers are those
/// of [`Codec::decode`]; each key version's cipher is set up once per
/// decoder, so use one decoder per batch.
pub struct Decoder<'c> {
    codec: &'c Codec,
    batch: Batch,
}

impl Decoder<'_> {
    /// This decoder with a budget: what decryption and decompression may
    /// produce over the whole batch, every payload and layer counted. The step
    /// that would exceed it is refused before it allocates, with
    /// [`CodecError::OverBudget`]; no budget (the default) is no limit beyond
    /// the per-payload [`CodecOptions::max_decoded_size`].
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.batch.budget = Budget {
            left: bytes,
            total: Some(bytes),
        };
        self
    }

    /// Decodes the payload whose index in the batch is `index`, its data in
    /// `data` (which decoding overwrites). A payload that
    /// [`Codec::decodes`] says no to comes back as it is, owned.
    pub fn decode_in_place<'d>(
        &mut self,
        index: usize,
        parts: PayloadParts<'_>,
        data: &'d mut [u8],
    ) -> Result<Decoded<'d>, CodecError> {
        let codec = self.codec;
        if codec.layer_of(parts.metadata.value(wire::METADATA_ENCODING)) != Some(Layer::Tcodec) {
            let payload = Cow::Owned(parts.to_payload(data));
            return codec
                .decode_layers(index, payload, &mut self.batch, 0)
                .map(Decoded::Owned);
        }
        let outer = Outer {
            metadata: parts.metadata,
            external_payloads: !parts.external_payloads.is_empty(),
        };
        let ((key_id, cipher), header_len, zstd) =
            codec.tcodec_cipher(index, outer, data, &mut self.batch.ciphers)?;
        let plaintext: &'d [u8] = wire::open_in_place(cipher, data, header_len)
            .map_err(|_| decrypt_error(index, key_id))?;
        let inner = match codec.inflate(index, zstd, plaintext, &mut self.batch.budget)? {
            Some(inflated) => inflated,
            None => {
                // The common case: read where it was decrypted.
                if let Some(view) = PayloadView::parse(plaintext)
                    && codec.layer_of(view.encoding()).is_none()
                {
                    return Ok(Decoded::View(view));
                }
                Bytes::copy_from_slice(plaintext)
            }
        };
        let inner = Payload::decode(inner).map_err(|_| CodecError::Malformed {
            index,
            encoding: wire::ENCODING,
            reason: Malformed::InnerPayload,
        })?;
        codec
            .decode_layers(index, Cow::Owned(inner), &mut self.batch, 1)
            .map(Decoded::Owned)
    }
}

impl Decoder<'_> {
    /// Decodes a whole payload the caller holds, the one at `index` in the
    /// batch (a payload fetched from External Storage), under this decoder's
    /// budget and ciphers: as [`Codec::decode_owned`] would.
    pub fn decode_payload(
        &mut self,
        index: usize,
        payload: Payload,
    ) -> Result<Payload, CodecError> {
        self.codec
            .decode_layers(index, Cow::Owned(payload), &mut self.batch, 0)
    }
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("key_versions", &self.batch.ciphers.0.len())
            .finish_non_exhaustive()
    }
}
