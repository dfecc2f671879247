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
            external_payloads: Vec::new(),
        }
    }
}

pub fn key32(hex_key: &str) -> tcodec::keys::SecretBytes32 {
    tcodec::keys::SecretBytes32::from_slice(&hex::decode(hex_key).unwrap()).unwrap()
}
