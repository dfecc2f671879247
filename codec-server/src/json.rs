//! The codec protocol's JSON: proto3 JSON of `temporal.api.common.v1.Payloads`,
//! as the Temporal Web UI and CLI send it to `/encode` and `/decode`.
//!
//! ```json
//! {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjoxfQ=="}]}
//! ```
//!
//! Metadata values and data are base64. Fields this build does not know are
//! kept, so a payload passed through comes back as it came.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tcodec::{ExternalPayloadDetails, Payload};

/// A request or response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PayloadsJson {
    /// The payloads, in order.
    #[serde(default)]
    pub payloads: Vec<PayloadJson>,
    /// Fields beside `payloads`, kept as they came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PayloadJson {
    /// Metadata values, base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Data, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// `externalPayloads`: `[{"sizeBytes": "123"}]`.
    #[serde(
        default,
        rename = "externalPayloads",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_payloads: Vec<ExternalJson>,
    /// Fields this build does not know, kept as they came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One `ExternalPayloadDetails`. proto3 JSON writes int64 as a string; a
/// number is accepted too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExternalJson {
    /// `sizeBytes`.
    #[serde(default, rename = "sizeBytes", skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<serde_json::Value>,
    /// Fields this build does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a JSON payload could not be turned into a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// A metadata value is not base64.
    #[error("payload {index}: metadata {key:?} is not valid base64")]
    Metadata {
        /// Index of the payload.
        index: usize,
        /// The metadata key.
        key: String,
    },
    /// The data is not base64.
    #[error("payload {index}: data is not valid base64")]
    Data {
        /// Index of the payload.
        index: usize,
    },
    /// `sizeBytes` is not an integer.
    #[error("payload {index}: externalPayloads sizeBytes is not an integer")]
    SizeBytes {
        /// Index of the payload.
        index: usize,
    },
}

fn b64(text: &str) -> Option<Vec<u8>> {
    // proto3 JSON accepts standard and URL-safe base64, padded or not.
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .ok()
}

impl PayloadJson {
    /// The payload this JSON describes.
    pub fn to_payload(&self, index: usize) -> Result<Payload, JsonError> {
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| {
                b64(v)
                    .map(|bytes| (k.clone(), bytes))
                    .ok_or_else(|| JsonError::Metadata {
                        index,
                        key: k.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let data = b64(&self.data).ok_or(JsonError::Data { index })?;
        let external_payloads = self
            .external_payloads
            .iter()
            .map(|e| {
                let size_bytes = match &e.size_bytes {
                    None => Some(0),
                    Some(serde_json::Value::String(s)) => s.parse().ok(),
                    Some(serde_json::Value::Number(n)) => n.as_i64(),
                    Some(_) => None,
                }
                .ok_or(JsonError::SizeBytes { index })?;
                Ok(ExternalPayloadDetails { size_bytes })
            })
            .collect::<Result<_, _>>()?;
        Ok(Payload {
            metadata,
            data,
            external_payloads,
        })
    }

    /// The JSON of a payload.
    pub fn from_payload(payload: &Payload) -> Self {
        Self {
            metadata: payload
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), STANDARD.encode(v)))
                .collect(),
            data: STANDARD.encode(&payload.data),
            external_payloads: payload
                .external_payloads
                .iter()
                .map(|e| ExternalJson {
                    size_bytes: Some(serde_json::Value::String(e.size_bytes.to_string())),
                    extra: serde_json::Map::new(),
                })
                .collect(),
            extra: serde_json::Map::new(),
        }
    }
}

impl PayloadsJson {
    /// The payloads this JSON describes.
    pub fn to_payloads(&self) -> Result<Vec<Payload>, JsonError> {
        self.payloads
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_payload(i))
            .collect()
    }

    /// The response for `payloads`, answering this request: a payload that came
    /// back unchanged (passed through) keeps the request's JSON, unknown fields
    /// and all.
    pub fn respond(&self, inputs: &[Payload], outputs: Vec<Payload>) -> PayloadsJson {
        let payloads = outputs
            .iter()
            .enumerate()
            .map(|(i, out)| match (self.payloads.get(i), inputs.get(i)) {
                (Some(json), Some(input)) if input == out => json.clone(),
                _ => PayloadJson::from_payload(out),
            })
            .collect();
        PayloadsJson {
            payloads,
            extra: self.extra.clone(),
        }
    }
}
