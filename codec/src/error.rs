//! Errors of encoding and decoding.
//!
//! Every error names the payload's index in its batch and, where one is known,
//! the key id. None carries key material or payload contents, and decryption
//! failures are opaque: they do not say which check failed.

use tcodec_keys::KeyError;

use crate::wire::HeaderError;

/// Why a batch could not be encoded or decoded. Batches are all-or-nothing:
/// the first failing payload fails the whole batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The key a payload needs could not be had; `source()` says why
    /// (unknown, disabled, destroyed, no primary, KMS unavailable).
    #[error("payload {index}: cannot use key {key_id}")]
    Key {
        /// Index of the payload in its batch.
        index: usize,
        /// The key id the payload needs (`primary` when encoding without one).
        key_id: String,
        /// Why the key could not be had.
        #[source]
        source: KeyError,
    },
    /// Authentication failed: the wrong key, or the payload (data, header or
    /// nonce) was altered. Deliberately says no more.
    #[error(
        "payload {index}: cannot decrypt under key {key_id}: wrong key, or the payload was altered"
    )]
    Decrypt {
        /// Index of the payload in its batch.
        index: usize,
        /// The key id the payload names.
        key_id: String,
    },
    /// The payload claims an encoding this codec handles but is not well formed.
    #[error("payload {index}: malformed {encoding} payload: {reason}")]
    Malformed {
        /// Index of the payload in its batch.
        index: usize,
        /// The payload's `encoding`.
        encoding: &'static str,
        /// What is wrong with it.
        reason: Malformed,
    },
    /// A payload of a foreign format (the samples' or temporal-proxy's
    /// `binary/encrypted`) that is not well formed.
    #[error("payload {index}: malformed {format} payload under key {key_id}: {reason}")]
    MalformedForeign {
        /// Index of the payload in its batch.
        index: usize,
        /// The format it claims.
        format: &'static str,
        /// The key id (or KEK URI) it names, as it came (logs escape it);
        /// empty when it names none.
        key_id: String,
        /// What is wrong with it.
        reason: Malformed,
    },
    /// Decoding would produce more than the configured maximum size.
    #[error("payload {index}: decoded size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Index of the payload in its batch.
        index: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Decoding the batch would produce more than its budget
    /// ([`Decoder::with_budget`](crate::Decoder::with_budget)), summed over
    /// its payloads and layers: refused before the step that would exceed it.
    #[error("payload {index}: the batch's decoded size would exceed its budget of {budget} bytes")]
    OverBudget {
        /// Index of the payload in its batch.
        index: usize,
        /// The batch's budget.
        budget: usize,
    },
    /// A payload not sealed by tcodec that the decode policy refuses: stored
    /// as plaintext, or in a legacy format not allowed. The message names the
    /// exception that would accept it.
    #[error(
        "payload {index}: a payload of encoding {encoding:?} is not sealed by tcodec and the decode policy refuses it; to accept such payloads during a migration, allow {encoding:?} (TCODEC_DECODE_ALLOW for a worker, decode_allow for a codec server namespace)"
    )]
    NotSealed {
        /// Index of the payload in its batch.
        index: usize,
        /// The payload's `encoding` (empty when it has none), as it came.
        encoding: String,
    },
    /// What was handed to [`Codec::encode_serialized`](crate::Codec::encode_serialized)
    /// is not a serialized `Payload` message; nothing was encoded.
    #[error("payload {index}: not a serialized Payload message")]
    NotAPayload {
        /// Index of the payload in its batch.
        index: usize,
    },
    /// Sealing failed (a payload too large for the cipher); nothing was
    /// encoded.
    #[error("payload {index}: cannot seal under key {key_id}")]
    Seal {
        /// Index of the payload in its batch.
        index: usize,
        /// The key id it was to be sealed under.
        key_id: String,
    },
    /// The system random number generator failed; nothing was encoded.
    #[error("the system random number generator failed")]
    Random,
    /// The payload needs decompressing, which this codec's options defer
    /// ([`CodecOptions::defer_decompression`](crate::CodecOptions::defer_decompression)):
    /// decode the batch again with a codec that does not.
    #[error("payload {index}: decompression is deferred")]
    Deferred {
        /// Index of the payload in its batch.
        index: usize,
    },
}

impl CodecError {
    /// The index of the failing payload in its batch, where there is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Key { index, .. }
            | Self::Decrypt { index, .. }
            | Self::Seal { index, .. }
            | Self::NotSealed { index, .. }
            | Self::Malformed { index, .. }
            | Self::MalformedForeign { index, .. }
            | Self::TooLarge { index, .. }
            | Self::OverBudget { index, .. }
            | Self::NotAPayload { index }
            | Self::Deferred { index } => Some(*index),
            Self::Random => None,
        }
    }

    /// The same error, naming `index` as the failing payload's: for a caller
    /// that handed the codec part of a larger batch.
    pub fn at_index(mut self, new: usize) -> Self {
        match &mut self {
            Self::Key { index, .. }
            | Self::Decrypt { index, .. }
            | Self::Seal { index, .. }
            | Self::NotSealed { index, .. }
            | Self::Malformed { index, .. }
            | Self::MalformedForeign { index, .. }
            | Self::TooLarge { index, .. }
            | Self::OverBudget { index, .. }
            | Self::NotAPayload { index }
            | Self::Deferred { index } => *index = new,
            Self::Random => {}
        }
        self
    }

    /// Whether the batch was left undone rather than refused: it needs work
    /// the codec was told not to do where it runs (a key not in memory, see
    /// `tcodec_keys::InMemory`; a layer to decompress, see
    /// [`CodecOptions::defer_decompression`](crate::CodecOptions::defer_decompression)).
    /// Decoding or encoding it again with a codec allowed to wait answers it.
    pub fn is_deferred(&self) -> bool {
        matches!(
            self,
            Self::Deferred { .. }
                | Self::Key {
                    source: KeyError::NotInMemory(_),
                    ..
                }
        )
    }

    /// The error's class, as FORMAT.md section 4.2 names it and the
    /// conformance vectors label it: `truncated`, `unsupported_version`,
    /// `unsupported_algorithm`, `unknown_flags`, `invalid_key_id`,
    /// `external_payloads`, `unexpected_metadata`, `key_id_mismatch`,
    /// `unknown_key`, `key_refused` (disabled or destroyed), `key_unavailable`,
    /// `decrypt`, `compression`, `too_large`, `inner_payload`, `too_deep`;
    /// and outside the format itself `not_sealed`, `malformed_foreign`,
    /// `over_budget`, `deferred`, `seal`, `not_a_payload`, `random`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Malformed { reason, .. } => reason.class(),
            Self::MalformedForeign { .. } => "malformed_foreign",
            Self::Key { source, .. } => match source {
                KeyError::Unknown(_) => "unknown_key",
                KeyError::Unavailable { .. } | KeyError::NotInMemory(_) => "key_unavailable",
                _ => "key_refused",
            },
            Self::Decrypt { .. } => "decrypt",
            Self::TooLarge { .. } => "too_large",
            Self::OverBudget { .. } => "over_budget",
            Self::NotSealed { .. } => "not_sealed",
            Self::Seal { .. } => "seal",
            Self::NotAPayload { .. } => "not_a_payload",
            Self::Random => "random",
            Self::Deferred { .. } => "deferred",
        }
    }

    /// The key id involved, where there is one.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Self::Key { key_id, .. }
            | Self::Decrypt { key_id, .. }
            | Self::Seal { key_id, .. }
            | Self::MalformedForeign { key_id, .. } => Some(key_id),
            _ => None,
        }
    }
}

impl Malformed {
    /// The class FORMAT.md section 4.2 gives this failure (see [`CodecError::class`]).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Header(HeaderError::Truncated) | Self::Truncated => "truncated",
            Self::Header(HeaderError::UnsupportedVersion(_)) => "unsupported_version",
            Self::Header(HeaderError::UnsupportedAlgorithm(_)) => "unsupported_algorithm",
            Self::Header(HeaderError::UnknownFlags(_)) => "unknown_flags",
            Self::Header(HeaderError::InvalidKeyId) => "invalid_key_id",
            Self::UnexpectedMetadata => "unexpected_metadata",
            Self::KeyIdMismatch => "key_id_mismatch",
            Self::MissingKeyId | Self::BadKeyText => "key_id_mismatch",
            Self::ExternalPayloads => "external_payloads",
            Self::Compression => "compression",
            Self::InnerPayload => "inner_payload",
            Self::TooDeep => "too_deep",
        }
    }
}

/// What is wrong with a malformed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The data's header is unreadable or names what this build does not support.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// A metadata key the format does not define is present.
    #[error("unexpected metadata key")]
    UnexpectedMetadata,
    /// The `tcodec-key-id` metadata is missing or differs from the header's key id.
    #[error("metadata key id does not match the header")]
    KeyIdMismatch,
    /// The legacy `encryption-key-id` metadata is missing or not text.
    #[error("missing encryption-key-id metadata")]
    MissingKeyId,
    /// The legacy key id is empty, longer than 255 bytes or holds control
    /// characters; temporal-proxy's `encryption-dek` is not base64 text.
    #[error("key id or wrapped key is not valid text")]
    BadKeyText,
    /// The outer payload carries external payload details, which the format forbids.
    #[error("unexpected external payload details")]
    ExternalPayloads,
    /// Too short to hold a nonce and a tag.
    #[error("data is truncated")]
    Truncated,
    /// The compressed inner payload is corrupt.
    #[error("compressed data is corrupt")]
    Compression,
    /// The decrypted bytes are not a serialized `Payload`.
    #[error("inner payload is not a valid Payload message")]
    InnerPayload,
    /// Encodings are nested deeper than the codec follows.
    #[error("encodings nested more than {} deep", crate::wire::MAX_LAYERS)]
    TooDeep,
}
