//! Errors of key lookup.

use crate::KeyId;

/// Why a key could not be had.
///
/// Messages name the key id, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key version with this id exists in the keyring.
    #[error("key {0} is not in the keyring")]
    Unknown(String),
    /// The key version exists but is disabled: payloads under it are refused
    /// until it is enabled again.
    #[error("key {0} is disabled")]
    Disabled(KeyId),
    /// The key version was destroyed; payloads under it can never be decoded.
    #[error("key {0} was destroyed")]
    Destroyed(KeyId),
    /// The keyring has no primary key version, so nothing can be encoded.
    #[error("the keyring has no primary key")]
    NoPrimary,
    /// The key exists but could not be unwrapped or loaded right now (for
    /// example, the KMS could not be reached). The cause is in `source()`.
    #[error("key {key_id} is unavailable")]
    Unavailable {
        /// The key that could not be loaded.
        key_id: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}
