//! The Temporal `Payload` message, as this crate sees it.
//!
//! This mirrors `temporal.api.common.v1.Payload` field for field (tags 1 to 3), so
//! the bytes it serializes are the bytes any Temporal SDK would produce and parse.
//! Metadata is kept in a [`BTreeMap`] so that serialization is deterministic,
//! which makes the format's test vectors reproducible.

use std::collections::BTreeMap;

/// A Temporal payload: metadata (values are raw bytes) and data.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[prost(skip_debug)]
pub struct Payload {
    /// Metadata such as `encoding`. Values are bytes, conventionally UTF-8 text.
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// The payload's bytes, interpreted according to the metadata.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// Details of payload data stored outside the Temporal server.
    #[prost(message, repeated, tag = "3")]
    pub external_payloads: Vec<ExternalPayloadDetails>,
}

/// `temporal.api.common.v1.Payload.ExternalPayloadDetails`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ExternalPayloadDetails {
    /// Size of the externally stored payload, in bytes.
    #[prost(int64, tag = "1")]
    pub size_bytes: i64,
}

impl Payload {
    /// A payload with the given `encoding` metadata and data.
    pub fn new(encoding: &str, data: impl Into<Vec<u8>>) -> Self {
        let mut metadata = BTreeMap::new();
        metadata.insert(
            crate::wire::METADATA_ENCODING.to_owned(),
            encoding.as_bytes().to_vec(),
        );
        Self {
            metadata,
            data: data.into(),
            external_payloads: Vec::new(),
        }
    }

    /// The `encoding` metadata value, if present.
    pub fn encoding(&self) -> Option<&[u8]> {
        self.metadata
            .get(crate::wire::METADATA_ENCODING)
            .map(Vec::as_slice)
    }
}

// The derived Debug would print payload data, which is exactly what must not
// reach logs. Print the shape instead.
impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encoding = self.encoding().map(String::from_utf8_lossy);
        f.debug_struct("Payload")
            .field("encoding", &encoding)
            .field("metadata_keys", &self.metadata.keys().collect::<Vec<_>>())
            .field("data_len", &self.data.len())
            .field("external_payloads", &self.external_payloads.len())
            .finish()
    }
}

/// The same message with `data` as [`bytes::Bytes`], so that decoding from an
/// owned buffer slices it instead of copying.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
struct BorrowedPayload {
    #[prost(btree_map = "string, bytes", tag = "1")]
    metadata: BTreeMap<String, Vec<u8>>,
    #[prost(bytes = "bytes", tag = "2")]
    data: bytes::Bytes,
    #[prost(message, repeated, tag = "3")]
    external_payloads: Vec<ExternalPayloadDetails>,
}

/// Up to this many serialized bytes, [`Payload::decode_owned`] copies rather
/// than reuses the buffer.
const SMALL: usize = 2048;

impl Payload {
    /// Parses a serialized payload that the caller owns, reusing its allocation
    /// for `data`.
    ///
    /// `data` is usually almost all of the buffer. Parsing from a slice would
    /// copy it (prost copies a `Vec<u8>` field twice); here the buffer becomes
    /// `data` by moving the bytes to its start. For large payloads that saves
    /// both copies and the page faults of fresh allocations.
    pub(crate) fn decode_owned(buf: Vec<u8>) -> Result<Self, prost::DecodeError> {
        use prost::Message;
        if buf.len() <= SMALL {
            // Copying a small `data` costs less than the shared buffer `Bytes`
            // would allocate.
            return Self::decode(buf.as_slice());
        }
        let parsed = BorrowedPayload::decode(bytes::Bytes::from(buf))?;
        Ok(Self {
            metadata: parsed.metadata,
            // The parse dropped every other reference to the buffer, so this
            // conversion moves bytes within it rather than allocating.
            data: Vec::from(parsed.data),
            external_payloads: parsed.external_payloads,
        })
    }
}
