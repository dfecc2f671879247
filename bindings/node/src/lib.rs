//! The native half of `@tcodec/temporal`: tcodec's Rust codec, keyring and
//! KEKs for TypeScript workers, as a Node-API module.
//!
//! The package's JavaScript (`bindings/node/index.js`) wraps it: `Keyring`,
//! `Codec`, and a `PayloadCodec` and data converter for the Temporal
//! TypeScript SDK. A batch crosses the boundary once and is encoded or
//! decoded on libuv's thread pool, off the event loop: the payload objects
//! themselves (`encodePayloads`, `decodePayloads`: metadata copied on the
//! JavaScript thread, each payload's data read in place on the pool's), the
//! answer one buffer the package's JavaScript slices into payloads; or, for
//! payloads with External Storage details, one serialized
//! `temporal.api.common.v1.Payloads` message each way (`encode`, `decode`).
//!
//! `S3Store` is the store behind the package's External Storage driver: the
//! codec server's and the Rust worker's S3 code, objects keyed by their
//! SHA-256, references in the official S3 driver's shape.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::collections::BTreeMap;

use bytes::Bytes;
use napi::bindgen_prelude::{AsyncTask, Buffer, Uint8Array, Uint8ArraySlice};
use napi::{Env, Error, Result, Task};
use napi_derive::napi;
use prost::Message;
use tcodec::storage::s3::{S3Options, S3Store as RustS3Store};
use tcodec::storage::{Reference, StorageConfig};
use tcodec::{
    Codec as RustCodec, CodecOptions, Compression, DecodePolicy, Payload, available_threads,
};
use tcodec_keys::kek::KekSettings;
use tcodec_keys::{FileKeyring, WATCH_INTERVAL, Watcher, display_chain, keyring_path_from_env};

/// The code every error of this module carries (`err.code` in JavaScript),
/// which the package turns into its `CodecError`.
const ERROR_CODE: &str = "TCODEC_ERROR";

fn error(message: impl Into<String>) -> Error {
    Error::new(
        napi::Status::GenericFailure,
        format!("{ERROR_CODE}: {}", message.into()),
    )
}

/// A keyring file, reloaded when it changes, with its KEKs.
#[napi]
pub struct Keyring {
    ring: FileKeyring,
    _watcher: Arc<Watcher>,
}

/// Where a keyring's KEKs come from; every field optional.
#[napi(object)]
#[derive(Default)]
pub struct KeyringOptions {
    /// The local master key's file (else `TCODEC_MASTER_KEY`).
    pub master_key_file: Option<String>,
    /// The AWS KMS keys (ARNs, ids, aliases) keyrings may name; none, no KMS.
    pub kms_keys: Option<Vec<String>>,
    /// A KMS endpoint in place of AWS's (a test server, a VPC endpoint).
    pub kms_endpoint: Option<String>,
    /// The KMS region, in place of the AWS configuration chain's.
    pub kms_region: Option<String>,
}

impl Keyring {
    fn with(path: PathBuf, settings: &KekSettings) -> Result<Self> {
        let ring = FileKeyring::open_with_settings(&path, settings)
            .map_err(|e| error(display_chain(&e)))?;
        let watcher = ring.watch(WATCH_INTERVAL);
        Ok(Self {
            ring,
            _watcher: Arc::new(watcher),
        })
    }
}

#[napi]
impl Keyring {
    /// Opens the keyring file at `path` with the KEKs `options` name.
    #[napi(factory)]
    pub fn open(path: String, options: Option<KeyringOptions>) -> Result<Self> {
        let options = options.unwrap_or_default();
        let settings = KekSettings {
            master_key_file: options.master_key_file.map(PathBuf::from),
            kms_endpoint: options.kms_endpoint,
            kms_region: options.kms_region,
            kms_keys: options.kms_keys.unwrap_or_default(),
        };
        Self::with(PathBuf::from(path), &settings)
    }

    /// Opens the keyring the environment names, as the Rust worker does:
    /// `TCODEC_KEYRING`, `TCODEC_MASTER_KEY_FILE` or `TCODEC_MASTER_KEY`,
    /// `TCODEC_KMS_KEYS`, and the AWS configuration chain.
    #[napi(factory)]
    pub fn from_env() -> Result<Self> {
        let path = keyring_path_from_env()
            .ok_or_else(|| error("no keyring: set TCODEC_KEYRING to the keyring file's path"))?;
        Self::with(path, &KekSettings::from_env())
    }

    /// The keyring's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.ring.document().name().to_owned()
    }

    /// The keyring document's revision in use.
    #[napi(getter)]
    pub fn revision(&self) -> u32 {
        u32::try_from(self.ring.document().revision()).unwrap_or(u32::MAX)
    }

    /// The id of the key that encrypts new payloads.
    #[napi(getter)]
    pub fn primary(&self) -> Option<String> {
        self.ring.document().primary().map(|k| k.id.to_string())
    }

    /// The file's path.
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.ring.path().display().to_string()
    }

    /// Re-reads the file if it changed; returns whether it did. (A watcher
    /// also does this every 2 seconds.)
    #[napi]
    pub fn reload(&self) -> Result<bool> {
        self.ring.reload().map_err(|e| error(display_chain(&e)))
    }
}

/// Options of a [`Codec`].
#[napi(object)]
pub struct CodecSettings {
    /// The decode policy's exceptions, as `TCODEC_DECODE_ALLOW` names them
    /// (comma separated); empty, the default, refuses every payload tcodec
    /// did not seal.
    pub decode_allow: Option<String>,
    /// `false` turns zstd off where a length side channel matters.
    pub compression: Option<bool>,
    /// The most threads the encoding (with compression) of one batch of
    /// 256 KiB or more is split across (default: as many as the process may
    /// run at once; 1 keeps every batch on the one pool thread).
    pub threads: Option<u32>,
}

/// The codec over a keyring: encodes and decodes batches.
#[napi]
pub struct Codec {
    codec: Arc<RustCodec>,
}

#[napi]
impl Codec {
    /// A codec over `keyring`.
    #[napi(constructor)]
    pub fn new(keyring: &Keyring, settings: Option<CodecSettings>) -> Self {
        let (allow, compression, threads) = settings
            .map(|s| (s.decode_allow.unwrap_or_default(), s.compression, s.threads))
            .unwrap_or_default();
        let threads = threads.map_or_else(available_threads, |n| n as usize);
        let mut options = CodecOptions::default()
            .with_decode_policy(DecodePolicy::from_allow_list(&allow))
            .with_threads(threads);
        if compression == Some(false) {
            options = options.with_compression(Compression::Off);
        }
        Self {
            codec: Arc::new(RustCodec::with_options(
                Arc::new(keyring.ring.clone()),
                options,
            )),
        }
    }

    /// Seals a batch: `payloads` is a serialized `Payloads` message; the
    /// promise gives the sealed batch, serialized, in order.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn encode(&self, payloads: Buffer) -> AsyncTask<Batch> {
        self.batch(payloads, Op::Encode)
    }

    /// Decodes a batch (a serialized `Payloads` message); the promise gives
    /// it decoded, serialized, in order. All or nothing: the first failing
    /// payload rejects the batch, naming its index.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn decode(&self, payloads: Buffer) -> AsyncTask<Batch> {
        self.batch(payloads, Op::Decode)
    }

    /// Seals a batch of payload objects (`{ metadata, data }`, as the
    /// Temporal SDK holds them); the promise gives the sealed batch packed
    /// in one buffer (see `pack`), in order.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn encode_payloads(&self, payloads: Vec<PayloadObject<'_>>) -> AsyncTask<ObjectBatch> {
        self.objects(payloads, Op::Encode)
    }

    /// Decodes a batch of payload objects; the promise gives it decoded,
    /// packed, in order. All or nothing, as [`decode`](Self::decode).
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn decode_payloads(&self, payloads: Vec<PayloadObject<'_>>) -> AsyncTask<ObjectBatch> {
        self.objects(payloads, Op::Decode)
    }
}

impl Codec {
    fn batch(&self, payloads: Buffer, op: Op) -> AsyncTask<Batch> {
        AsyncTask::new(Batch {
            codec: Arc::clone(&self.codec),
            // Read in place on the pool's thread, not copied: the package's
            // JavaScript makes this buffer for the call and never touches it
            // again (napi's Buffer keeps it alive and releases it on the
            // JavaScript thread).
            input: payloads,
            op,
        })
    }
}

impl Codec {
    fn objects(&self, payloads: Vec<PayloadObject<'_>>, op: Op) -> AsyncTask<ObjectBatch> {
        let input = payloads
            .into_iter()
            .map(|p| Held {
                // Metadata is small: copied here, on the JavaScript thread.
                metadata: p
                    .metadata
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.to_vec()))
                    .collect(),
                // Data is read on the pool's thread, where it lies; the
                // reference keeps it alive until the task is dropped, back on
                // the JavaScript thread.
                data: p.data,
            })
            .collect();
        AsyncTask::new(ObjectBatch {
            codec: Arc::clone(&self.codec),
            input,
            op,
        })
    }
}

#[derive(Clone, Copy)]
enum Op {
    Encode,
    Decode,
}

/// One batch's work on libuv's thread pool.
pub struct Batch {
    codec: Arc<RustCodec>,
    input: Buffer,
    op: Op,
}

/// `temporal.api.common.v1.Payloads`: one field, the repeated payloads.
#[derive(Clone, PartialEq, Message)]
struct Payloads {
    #[prost(message, repeated, tag = "1")]
    payloads: Vec<Payload>,
}

impl Task for Batch {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Vec<u8>> {
        let batch = Payloads::decode(&self.input[..])
            .map_err(|_| error("the batch is not a serialized Payloads message"))?;
        let done = match self.op {
            Op::Encode => self.codec.encode(&batch.payloads),
            // The parsed batch is ours: sealed data is opened where it lies.
            Op::Decode => self.codec.decode_owned(batch.payloads),
        }
        .map_err(|e| error(display_chain(&e)))?;
        Ok(Payloads { payloads: done }.encode_to_vec())
    }

    fn resolve(&mut self, _env: Env, output: Vec<u8>) -> Result<Buffer> {
        Ok(Buffer::from(output))
    }
}

/// A payload object as the Temporal TypeScript SDK holds it. (Payloads with
/// External Storage details go through [`Codec::encode`] and
/// [`Codec::decode`], which carry them.)
#[napi(object, object_to_js = false)]
pub struct PayloadObject<'a> {
    /// Metadata values by key.
    pub metadata: Option<HashMap<String, Uint8ArraySlice<'a>>>,
    /// The payload's bytes.
    pub data: Option<Uint8Array>,
}

/// A payload object's parts the pool's thread reads.
struct Held {
    metadata: BTreeMap<String, Vec<u8>>,
    data: Option<Uint8Array>,
}

/// One batch of payload objects' work on libuv's thread pool.
pub struct ObjectBatch {
    codec: Arc<RustCodec>,
    input: Vec<Held>,
    op: Op,
}

impl Task for ObjectBatch {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Vec<u8>> {
        let payloads = self.input.iter_mut().map(|held| Payload {
            metadata: std::mem::take(&mut held.metadata),
            data: held
                .data
                .as_deref()
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
            external_payloads: Vec::new(),
        });
        let done = match self.op {
            Op::Encode => self.codec.encode(&payloads.collect::<Vec<_>>()),
            // The copy is ours: sealed data is opened where it lies.
            Op::Decode => self.codec.decode_owned(payloads.collect()),
        }
        .map_err(|e| error(display_chain(&e)))?;
        pack(&done)
    }

    fn resolve(&mut self, _env: Env, packed: Vec<u8>) -> Result<Buffer> {
        Ok(Buffer::from(packed))
    }
}

/// Packs a batch of payloads into one buffer, the answer of
/// [`Codec::encode_payloads`] and [`Codec::decode_payloads`]. All numbers are
/// 32-bit little-endian. First the count `w` of layout words that follow it;
/// then the layout, for each payload in order: its number of metadata
/// entries `n`, each entry's key and value as (offset, length), its data's
/// (offset, length), its number of External Storage details `m` (a decoded
/// reference's) and each one's size in bytes as (low, high) 32 bits: `1 + 4n
/// \+ 2 + 1 + 2m` words a payload. Then the keys, values and data the offsets
/// (from the buffer's start) point at.
fn pack(payloads: &[Payload]) -> Result<Vec<u8>> {
    let parts: usize = payloads
        .iter()
        .map(|p| {
            p.data.len()
                + p.metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    let words: usize = payloads
        .iter()
        .map(|p| 4 + 4 * p.metadata.len() + 2 * p.external_payloads.len())
        .sum();
    let header = 4 * (1 + words);
    let too_large = || error("the batch is over 4 GiB, more than one answer can carry");
    let word = |n: usize| u32::try_from(n).map_err(|_| too_large());
    if header
        .checked_add(parts)
        .is_none_or(|total| u32::try_from(total).is_err())
    {
        return Err(too_large());
    }
    let mut layout: Vec<u32> = Vec::with_capacity(1 + words);
    layout.push(word(words)?);
    let mut out = vec![0u8; header];
    out.reserve(parts);
    for payload in payloads {
        layout.push(word(payload.metadata.len())?);
        let parts = payload
            .metadata
            .iter()
            .flat_map(|(key, value)| [key.as_bytes(), value.as_slice()])
            .chain([&payload.data[..]]);
        for part in parts {
            layout.push(word(out.len())?);
            layout.push(word(part.len())?);
            out.extend_from_slice(part);
        }
        layout.push(word(payload.external_payloads.len())?);
        for details in &payload.external_payloads {
            // Sizes are never negative; a negative one reads as 0.
            let size = u64::try_from(details.size_bytes).unwrap_or(0);
            layout.push((size & 0xffff_ffff) as u32);
            layout.push((size >> 32) as u32);
        }
    }
    for (slot, value) in out.chunks_exact_mut(4).zip(&layout) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
    Ok(out)
}

/// Where an [`S3Store`] keeps payloads.
#[napi(object)]
pub struct S3StoreOptions {
    /// The bucket.
    pub bucket: String,
    /// The namespace: objects go under `v0/ns/<namespace>/`, where the
    /// official S3 drivers write its payloads, and are read from there only.
    pub namespace: Option<String>,
    /// A key prefix in place of the namespace's.
    pub prefix: Option<String>,
    /// An endpoint URL in place of AWS's (a VPC endpoint, an S3-compatible
    /// server); path-style addressing then.
    pub endpoint: Option<String>,
    /// The region, in place of the AWS configuration chain's.
    pub region: Option<String>,
    /// The largest object read, in bytes (default 64 MiB).
    pub max_object_bytes: Option<u32>,
    /// Per-request timeout in milliseconds (default 30 s).
    pub timeout_ms: Option<u32>,
}

/// The runtime every store's requests run on: one thread for the network;
/// each call's work runs on the libuv pool thread that waits for it.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tcodec-s3")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| error(format!("cannot start the S3 runtime: {e}")))
}

/// One bucket and prefix of S3, for External Storage: stores serialized
/// payloads under keys their SHA-256 derives (conditional writes, so a retry
/// writes nothing twice) and fetches what claims name, from this bucket and
/// prefix only, each object checked against its claim's SHA-256.
#[napi]
pub struct S3Store {
    store: RustS3Store,
}

#[napi]
impl S3Store {
    /// A store; makes no request.
    #[napi(constructor)]
    pub fn new(options: S3StoreOptions) -> Result<Self> {
        if options.bucket.is_empty() {
            return Err(error("External Storage needs a bucket"));
        }
        let namespace = options.namespace.as_deref().unwrap_or("default");
        let mut config = StorageConfig::new(options.bucket, namespace);
        if let Some(prefix) = options.prefix {
            config.prefix = prefix;
        }
        if let Some(max) = options.max_object_bytes {
            config.max_object_bytes = max as usize;
        }
        let s3 = S3Options {
            endpoint: options.endpoint,
            region: options.region,
            timeout: options
                .timeout_ms
                .map(|ms| Duration::from_millis(ms.into())),
        };
        Ok(Self {
            store: RustS3Store::new(config, s3),
        })
    }

    /// The store the environment names, as the Rust worker reads it
    /// (`TCODEC_STORAGE_BUCKET`, `TCODEC_STORAGE_PREFIX`,
    /// `TCODEC_STORAGE_ENDPOINT`, `TCODEC_STORAGE_REGION`,
    /// `TCODEC_STORAGE_THRESHOLD`, `TEMPORAL_NAMESPACE`); null without a bucket.
    #[napi]
    pub fn from_env() -> Result<Option<S3Store>> {
        let store = RustS3Store::from_env().map_err(|e| error(e.to_string()))?;
        Ok(store.map(|store| Self { store }))
    }

    /// The bucket.
    #[napi(getter)]
    pub fn bucket(&self) -> String {
        self.store.config().bucket.clone()
    }

    /// Payloads of at least this many bytes (serialized, sealed) are stored.
    #[napi(getter)]
    pub fn threshold(&self) -> u32 {
        u32::try_from(self.store.config().threshold).unwrap_or(u32::MAX)
    }

    /// The key prefix objects are written and read under.
    #[napi(getter)]
    pub fn prefix(&self) -> String {
        self.store.config().prefix.clone()
    }

    /// Stores each serialized payload; the promise gives each one's claim
    /// (`bucket`, `key`, `hash_algorithm`, `hash_value`), in order.
    #[napi(ts_return_type = "Promise<Record<string, string>[]>")]
    pub fn store(&self, objects: Vec<Buffer>) -> AsyncTask<StoreObjects> {
        AsyncTask::new(StoreObjects {
            store: self.store.clone(),
            objects: objects.iter().map(|b| b.to_vec()).collect(),
        })
    }

    /// Fetches what each claim names (each distinct object once); the
    /// promise gives the serialized payloads, in order. A claim naming
    /// another bucket or prefix is refused before any request.
    #[napi(ts_return_type = "Promise<Buffer[]>")]
    pub fn retrieve(&self, claims: Vec<HashMap<String, String>>) -> AsyncTask<RetrieveObjects> {
        AsyncTask::new(RetrieveObjects {
            store: self.store.clone(),
            claims,
        })
    }
}

/// [`S3Store::store`]'s work.
pub struct StoreObjects {
    store: RustS3Store,
    objects: Vec<Vec<u8>>,
}

impl Task for StoreObjects {
    type Output = Vec<HashMap<String, String>>;
    type JsValue = Vec<HashMap<String, String>>;

    fn compute(&mut self) -> Result<Self::Output> {
        let (store, objects) = (&self.store, std::mem::take(&mut self.objects));
        let config = store.config();
        let mut claims = Vec::with_capacity(objects.len());
        let mut located = Vec::with_capacity(objects.len());
        for (index, object) in objects.into_iter().enumerate() {
            let (location, reference) = config.place(&object);
            claims.push(reference.claim.into_iter().collect());
            located.push((index, location, object.into()));
        }
        runtime()?
            .block_on(store.put_each(located, |_, _, _| {}))
            .map_err(|e| error(e.to_string()))?;
        Ok(claims)
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(output)
    }
}

/// [`S3Store::retrieve`]'s work.
pub struct RetrieveObjects {
    store: RustS3Store,
    claims: Vec<HashMap<String, String>>,
}

impl Task for RetrieveObjects {
    type Output = Vec<Vec<u8>>;
    type JsValue = Vec<Buffer>;

    fn compute(&mut self) -> Result<Self::Output> {
        let store = &self.store;
        let references: Vec<Reference> = std::mem::take(&mut self.claims)
            .into_iter()
            .map(|claim| Reference {
                driver_name: store.config().driver_name.clone(),
                claim: claim.into_iter().collect(),
                size_bytes: 0,
            })
            .collect();
        let locations = store
            .permit_all(references.iter().enumerate())
            .map_err(|e| error(e.to_string()))?;
        let budget = store
            .config()
            .max_object_bytes
            .saturating_mul(references.len());
        let mut fetched = runtime()?
            .block_on(store.fetch_each_serialized(&locations, budget, |_, _, _| {}))
            .map_err(|e| error(e.to_string()))?;
        (0..references.len())
            .map(|i| {
                fetched
                    .remove(&i)
                    // The object's own buffer when no other reference shares it.
                    .map(Vec::from)
                    .ok_or_else(|| error(format!("payload {i}: not fetched")))
            })
            .collect()
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(output.into_iter().map(Buffer::from).collect())
    }
}
