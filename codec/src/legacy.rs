//! The official Temporal samples' payload formats, decoded so that histories
//! written before a move to tcodec stay readable. tcodec never writes them.
//!
//! - `binary/encrypted` with metadata `encryption-key-id`: data is a 12-byte
//!   nonce, then AES-256-GCM ciphertext of the serialized inner `Payload`, then
//!   the 16-byte tag; no associated data. (Go, Python and TypeScript samples.)
//! - `binary/zlib`: data is the zlib stream of the serialized inner `Payload`.
//!   (Go's `ZlibCodec`.)
//!
//! Neither format authenticates its metadata, and `binary/zlib` is not
//! encrypted at all: accept them only for migration.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

use tcodec_keys::LegacyKey;

/// `encoding` of the samples' encrypted payloads.
pub const ENCODING_ENCRYPTED: &str = "binary/encrypted";
/// Metadata key naming the samples' encryption key.
pub const METADATA_KEY_ID: &str = "encryption-key-id";
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

/// Decrypts `binary/encrypted` data with the legacy key.
pub(crate) fn open_encrypted(key: &LegacyKey, data: &[u8]) -> Result<Vec<u8>, LegacyOpenError> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(LegacyOpenError::Truncated);
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.secret().expose_secret().into());
    let nonce = Nonce::try_from(nonce).map_err(|_| LegacyOpenError::Truncated)?;
    cipher
        .decrypt(&nonce, sealed)
        .map_err(|_| LegacyOpenError::Decrypt)
}
