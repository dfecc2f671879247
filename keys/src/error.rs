//! Errors of key lookup.

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
    Disabled(String),
    /// The key version was destroyed; payloads under it can never be decoded.
    #[error("key {0} was destroyed")]
    Destroyed(String),
    /// A lifecycle change the key's state does not allow.
    #[error("key {key_id} is {state}: {why}")]
    Refused {
        /// The key.
        key_id: String,
        /// Its state, unchanged.
        state: crate::KeyState,
        /// Why the change is refused, and what to do instead.
        why: &'static str,
    },
    /// The keyring has no primary key version, so nothing can be encoded.
    #[error("the keyring has no primary key")]
    NoPrimary,
    /// The key is not in memory, and the key source asked must not fetch it
    /// (see [`FileKeyring::in_memory`](crate::FileKeyring::in_memory)): the
    /// caller asks again where it may wait on the keyring file or the KMS.
    #[error("key {0} is not in memory")]
    NotInMemory(String),
    /// The payload names a key-encryption key this deployment does not allow
    /// or cannot use (a temporal-proxy payload's KEK URI): refused before any
    /// KMS is asked. The cause is in `source()`.
    #[error("key {key_id} is not one this deployment may use")]
    NotAllowed {
        /// The key (a KEK URI).
        key_id: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A payload's wrapped key could not be unwrapped for a reason of its
    /// own (corrupt, or wrapped by another key): no retry will help.
    #[error("key {key_id} cannot be used: {why}")]
    Unusable {
        /// The key (a KEK URI).
        key_id: String,
        /// Why.
        why: &'static str,
    },
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

/// An error and its causes on one line, `outer: inner: innermost`: for
/// reports that carry only a message (HTTP error bodies, Temporal task
/// failures, a keyring's last reload error). tcodec's errors name payload
/// indices, key ids and files, never key material or plaintext, so the whole
/// chain is safe to show.
pub fn display_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
