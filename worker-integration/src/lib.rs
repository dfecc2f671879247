#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tcodec::storage::s3::S3Store;
use tcodec::{Codec, CodecOptions, DecodePolicy};
use tcodec_keys::kek::{KekError, KekSettings};
use tcodec_keys::store::StoreError;
use tcodec_keys::{FileKeyring, Watcher};
use temporalio_common::data_converters::{DataConverter, PayloadConverter};

mod failure;
mod payload_codec;

pub use failure::{
    ENCODED_MESSAGE, EncryptingFailureConverter, PlaintextFailure, encode_attributes,
    unsealed_failure,
};
pub use payload_codec::{CodecFailure, PayloadCodec, from_sdk, to_sdk};

/// How often a worker checks its keyring file for changes
/// ([`tcodec_keys::WATCH_INTERVAL`], shared with the codec server and the
/// Python and Node packages).
pub const KEYRING_POLL: Duration = tcodec_keys::WATCH_INTERVAL;

/// A `DataConverter` whose codec is tcodec and whose failure converter
/// encrypts failure messages and stack traces.
pub fn data_converter(codec: Arc<Codec>) -> DataConverter {
    DataConverter::new(
        PayloadConverter::default(),
        EncryptingFailureConverter::for_codec(&codec),
        PayloadCodec::new(codec),
    )
}

/// The decode policy a list of exceptions names, comma separated as
/// `TCODEC_DECODE_ALLOW` takes them: plaintext encodings to accept
/// (`json/plain`, …, or `*` for any), and the legacy formats `binary/encrypted`
/// and `binary/zlib`. Empty: strict, every payload must be tcodec's.
///
/// ```
/// use tcodec::DecodePolicy;
/// let policy = tcodec_worker::decode_policy_from("json/plain, binary/zlib");
/// assert_eq!(policy, DecodePolicy::strict().allow_plaintext("json/plain").allow_zlib());
/// assert_eq!(tcodec_worker::decode_policy_from(""), DecodePolicy::strict());
/// ```
pub fn decode_policy_from(list: &str) -> DecodePolicy {
    DecodePolicy::from_allow_list(list)
}

/// Why a worker's codec could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerCodecError {
    /// No keyring path was given.
    #[error("no keyring: set TCODEC_KEYRING to the keyring file's path")]
    NoKeyring,
    /// The key-encryption keys could not be set up.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The keyring could not be read or is invalid.
    #[error(transparent)]
    Keyring(#[from] StoreError),
    /// An External Storage setting is not usable.
    #[error("{variable}: {message}")]
    Storage {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A worker's or client's tcodec: a keyring file (reloaded when it changes),
/// its key-encryption keys, and the codec over them.
///
/// Cloning is cheap; the keyring watcher stops when the last clone is dropped.
#[derive(Clone)]
pub struct WorkerCodec {
    codec: Arc<Codec>,
    keyring: FileKeyring,
    storage: Option<S3Store>,
    _watcher: Arc<Watcher>,
}

impl std::fmt::Debug for WorkerCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerCodec")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// A worker's codec options: the defaults, with the compression of batches
/// of 256 KiB or more split across the process's cores (a worker has one
/// batch at a time and idle cores; a codec server does not, and keeps the
/// default of one).
fn worker_options() -> CodecOptions {
    CodecOptions::default().with_threads(tcodec::available_threads())
}

impl WorkerCodec {
    /// Opens the keyring at `path`, with KEKs from `settings`, and watches it.
    /// The compression of batches of 256 KiB or more is split across the
    /// process's cores ([`CodecOptions::threads`]; `open_with` sets other
    /// options).
    pub fn open(path: impl AsRef<Path>, settings: &KekSettings) -> Result<Self, WorkerCodecError> {
        Self::open_with(path, settings, worker_options())
    }

    /// Like [`WorkerCodec::open`], with codec options (compression, limits).
    pub fn open_with(
        path: impl AsRef<Path>,
        settings: &KekSettings,
        options: CodecOptions,
    ) -> Result<Self, WorkerCodecError> {
        let path = path.as_ref();
        let keyring = FileKeyring::open_with_settings(path, settings)?;
        let watcher = keyring.watch(KEYRING_POLL);
        Ok(Self {
            codec: Arc::new(Codec::with_options(Arc::new(keyring.clone()), options)),
            keyring,
            storage: None,
            _watcher: Arc::new(watcher),
        })
    }

    /// Opens the keyring named by the environment, as the `tcodec` binary does:
    /// `TCODEC_KEYRING` (the file), `TCODEC_MASTER_KEY_FILE` or
    /// `TCODEC_MASTER_KEY` (a local master key), and for AWS KMS the AWS
    /// configuration chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials …)
    /// with `TCODEC_KMS_KEYS` naming, comma separated, the KMS keys keyrings
    /// may use (any other is refused before KMS is called).
    /// `TCODEC_DECODE_ALLOW` names the decode policy's exceptions, comma
    /// separated (see [`decode_policy_from`]); by default the worker refuses
    /// every payload tcodec did not seal. `TCODEC_STORAGE_BUCKET` and its
    /// companions turn on External Storage ([`S3Store::from_env`]). Batches
    /// are compressed across cores as [`WorkerCodec::open`] says.
    pub fn from_env() -> Result<Self, WorkerCodecError> {
        let path = tcodec_keys::keyring_path_from_env().ok_or(WorkerCodecError::NoKeyring)?;
        let settings = KekSettings::from_env();
        let allow = std::env::var("TCODEC_DECODE_ALLOW").unwrap_or_default();
        let options = worker_options().with_decode_policy(decode_policy_from(&allow));
        let storage = S3Store::from_env().map_err(|e| WorkerCodecError::Storage {
            variable: e.variable,
            message: e.message,
        })?;
        Ok(Self::open_with(path, &settings, options)?.with_storage(storage))
    }

    /// This codec with External Storage in `store` (or none).
    pub fn with_storage(mut self, store: Option<S3Store>) -> Self {
        self.storage = store;
        self
    }

    /// The `DataConverter` to put in `ClientOptions::data_converter`.
    pub fn data_converter(&self) -> DataConverter {
        DataConverter::new(
            PayloadConverter::default(),
            EncryptingFailureConverter::for_codec(&self.codec),
            self.payload_codec(),
        )
    }

    /// The payload codec alone.
    pub fn payload_codec(&self) -> PayloadCodec {
        PayloadCodec::new(Arc::clone(&self.codec)).with_storage(self.storage.clone())
    }

    /// The codec.
    pub fn codec(&self) -> &Arc<Codec> {
        &self.codec
    }

    /// The keyring.
    pub fn keyring(&self) -> &FileKeyring {
        &self.keyring
    }
}
