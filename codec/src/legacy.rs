//! The official Temporal samples' payload formats, decoded so that histories
//! written before a move to tcodec stay readable. tcodec never writes them.
//!
//! - `binary/encrypted` with metadata `encryption-key-id`: data is a 12-byte
//!   nonce, then AES-256-GCM ciphertext of the serialized inner `Payload`, then
//!   the 16-byte tag; no associated data. (Go, Python and TypeScript samples.)
//! - `binary/zlib`: data is the zlib stream of the serialized inner `Payload`.
//!   (Go's `ZlibCodec`.)
//!
//! - `binary/encrypted` with metadata `encryption-key-id` and
//!   `encryption-dek`: temporal-proxy's format. The key id is the URI of the
//!   KEK (AWS KMS) that wrapped a data key, `encryption-dek` that wrapped key
//!   in standard base64; data is laid out as the samples' (12-byte nonce,
//!   AES-256-GCM ciphertext and tag of the serialized inner `Payload`, no
//!   associated data), under the data key.
//!
//! None of the three authenticates its metadata, and `binary/zlib` is not
//! encrypted at all: accept them only for migration. tcodec takes each
//! format's metadata exactly: a payload with a key more or less is refused.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

use tcodec_keys::SecretBytes32;

/// `encoding` of the samples' encrypted payloads.
pub const ENCODING_ENCRYPTED: &str = "binary/encrypted";
/// Metadata key naming the samples' encryption key (temporal-proxy: the KEK's URI).
pub const METADATA_KEY_ID: &str = "encryption-key-id";
/// Metadata key of temporal-proxy's wrapped data key, which tells its payloads
/// from the samples'.
pub const METADATA_DEK: &str = "encryption-dek";
/// `encoding` of Go's `ZlibCodec` payloads.
pub const ENCODING_ZLIB: &str = "binary/zlib";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a legacy payload could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegacyOpenError {
    Truncated,
    Decrypt,
}

/// Which `binary/encrypted` format a payload is, by its metadata keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encrypted {
    /// The samples' codec: a static key named by `encryption-key-id`.
    Samples,
    /// temporal-proxy: a data key wrapped by the KEK the URI names.
    Proxy,
}

impl Encrypted {
    /// The format a payload with these metadata keys claims to be.
    pub(crate) fn of<'a>(mut keys: impl Iterator<Item = &'a str>) -> Self {
        if keys.any(|k| k == METADATA_DEK) {
            Self::Proxy
        } else {
            Self::Samples
        }
    }

    /// The format's name, for errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Samples => "samples' binary/encrypted",
            Self::Proxy => "temporal-proxy binary/encrypted",
        }
    }

    /// Whether `key` is one of the format's metadata keys.
    pub(crate) fn defines(self, key: &str) -> bool {
        key == "encoding" || key == METADATA_KEY_ID || (self == Self::Proxy && key == METADATA_DEK)
    }
}

/// Decrypts `binary/encrypted` data (either format) with its 256-bit key.
pub(crate) fn open_encrypted(key: &SecretBytes32, data: &[u8]) -> Result<Vec<u8>, LegacyOpenError> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(LegacyOpenError::Truncated);
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.expose_secret().into());
    let nonce = Nonce::try_from(nonce).map_err(|_| LegacyOpenError::Truncated)?;
    cipher
        .decrypt(&nonce, sealed)
        .map_err(|_| LegacyOpenError::Decrypt)
}
