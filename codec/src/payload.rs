//! The Temporal `Payload` message, as this crate sees it.
//!
//! This mirrors `temporal.api.common.v1.Payload` field for field (tags 1 to 3), so
//! the bytes it serializes are the bytes any Temporal SDK would produce and parse.
//! Metadata is kept in a [`BTreeMap`] so that serialization is deterministic,
//! which makes the format's test vectors reproducible.

use std::collections::BTreeMap;

use bytes::Bytes;

/// A Temporal payload: metadata (values are raw bytes) and data.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[prost(skip_debug)]
pub struct Payload {
    /// Metadata such as `encoding`. Values are bytes, conventionally UTF-8 text.
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// The payload's bytes, interpreted according to the metadata. A
    /// [`Bytes`], so that a decoded payload's data can be a view of the
    /// decryption buffer; `Vec<u8>` converts into it without copying.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
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
    pub fn new(encoding: &str, data: impl Into<Bytes>) -> Self {
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
