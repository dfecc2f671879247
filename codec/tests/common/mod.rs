//! Helpers shared by the codec's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use tcodec::Payload;

/// A payload as the vector files write it: metadata values and data in hex.
#[derive(Deserialize, Clone)]
pub struct HexPayload {
    pub metadata: BTreeMap<String, String>,
    pub data: String,
    #[serde(default)]
    pub external_payloads: Vec<HexExternal>,
}

/// `ExternalPayloadDetails` as the vector files write it.
#[derive(Deserialize, Clone)]
pub struct HexExternal {
    pub size_bytes: i64,
}

impl HexPayload {
    pub fn to_payload(&self) -> Payload {
        Payload {
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), hex::decode(v).unwrap()))
                .collect(),
            data: hex::decode(&self.data).unwrap().into(),
            external_payloads: self
                .external_payloads
                .iter()
                .map(|e| tcodec::ExternalPayloadDetails {
                    size_bytes: e.size_bytes,
                })
                .collect(),
        }
    }
}

pub fn key32(hex_key: &str) -> tcodec::keys::SecretBytes32 {
    tcodec::keys::SecretBytes32::from_slice(&hex::decode(hex_key).unwrap()).unwrap()
}

/// Decodes `payloads` one by one with a [`tcodec::Decoder`], from their parts
/// and a copy of their data (decrypted in place), as the codec server does;
/// views are made owned so the result compares with `Codec::decode`'s.
pub fn decode_in_place(
    codec: &tcodec::Codec,
    payloads: &[Payload],
) -> Result<Vec<Payload>, tcodec::CodecError> {
    let mut decoder = codec.decoder();
    payloads
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let metadata = pairs(p);
            let parts = tcodec::PayloadParts {
                metadata: &metadata,
                external_payloads: &p.external_payloads,
            };
            let mut data = p.data.to_vec();
            Ok(match decoder.decode_in_place(index, parts, &mut data)? {
                tcodec::Decoded::View(view) => view.to_payload(),
                tcodec::Decoded::Owned(payload) => payload,
            })
        })
        .collect()
}

/// A payload's metadata as the pairs `tcodec::PayloadParts` takes.
pub fn pairs(p: &Payload) -> Vec<(&str, &[u8])> {
    p.metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect()
}
