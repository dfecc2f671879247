//! The codec protocol's JSON: proto3 JSON of `temporal.api.common.v1.Payloads`,
//! as the Temporal Web UI and CLI send it to `/encode` and `/decode`.
//!
//! ```json
//! {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjoxfQ=="}]}
//! ```
//!
//! Metadata values and data are base64. Fields this build does not know are
//! kept, so a payload passed through comes back as it came.
//!
//! This is the server's per-payload hot path, so it avoids copies: strings are
//! borrowed from the request body where JSON allows, only the payloads the codec
//! works on are decoded into [`Payload`]s (the others are checked and sent back
//! as they came), and the answer's base64 is written straight into the response
//! body.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::display::Base64Display;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tcodec::{Codec, CodecError, ExternalPayloadDetails, Payload};

use crate::metrics::Endpoint;

/// The metadata key naming a payload's encoding.
const ENCODING: &str = "encoding";

/// Why [`process`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The body is not `{"payloads": [...]}` JSON. The text says what is
    /// wrong and where, never the offending value (see [`json_error`]).
    #[error("not {{\"payloads\": [...]}} JSON: {0}")]
    Json(String),
    /// More payloads than the limit.
    #[error("{count} payloads exceed the limit of {limit}")]
    TooManyPayloads {
        /// Payloads in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A payload's base64 or `externalPayloads` is malformed.
    #[error(transparent)]
    Payload(JsonError),
    /// The codec refused a payload; the error names it by its index in the
    /// request.
    #[error(transparent)]
    Codec(CodecError),
    /// The answer could not be written.
    #[error("cannot write the response: {0}")]
    Write(serde_json::Error),
}

/// A JSON error's text without the value it is about. serde's messages for a
/// value of the wrong type quote it (`invalid type: string "..."`), and that
/// value may be a payload; syntax errors name no input.
fn json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!(
            "a value of the wrong type or shape at line {} column {}",
            e.line(),
            e.column()
        ),
        _ => e.to_string(),
    }
}

/// One `/encode` or `/decode` body in, the answer's body and its payload
/// count out: what the codec server does per request, and `tcodec encode` and
/// `tcodec decode` per input.
pub fn process(
    codec: &Codec,
    endpoint: Endpoint,
    body: &[u8],
    max_payloads: usize,
) -> Result<(Vec<u8>, usize), ProcessError> {
    let request = PayloadsJson::parse(body).map_err(|e| ProcessError::Json(json_error(&e)))?;
    let count = request.payloads.len();
    if count > max_payloads {
        return Err(ProcessError::TooManyPayloads {
            count,
            limit: max_payloads,
        });
    }
    // Decoding leaves payloads that are not the codec's as they came: those
    // stay JSON and go back verbatim.
    let split = match endpoint {
        Endpoint::Encode => request.split(|_| true),
        Endpoint::Decode => request.split(|encoding| codec.decodes(encoding)),
    };
    let (payloads, answer) = split.map_err(ProcessError::Payload)?;
    let out = match endpoint {
        Endpoint::Encode => codec.encode(&payloads),
        Endpoint::Decode => codec.decode_owned(payloads),
    }
    // The codec saw only the selected payloads: name the request's index.
    .map_err(|e| ProcessError::Codec(answer.in_request(e)))?;
    let body = answer.to_json(&out).map_err(ProcessError::Write)?;
    Ok((body, count))
}

/// A JSON string, borrowed from the body unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A request body.
#[derive(Debug, Clone, Default)]
pub struct PayloadsJson<'a> {
    /// The payloads, in order.
    pub payloads: Vec<PayloadJson<'a>>,
    /// Fields beside `payloads`, kept as they came.
    pub extra: Map<String, Value>,
}

/// One payload, as it came.
#[derive(Debug, Clone, Default)]
pub struct PayloadJson<'a> {
    /// Metadata keys and values (base64), in the order they came.
    pub metadata: Vec<(Str<'a>, Str<'a>)>,
    /// Data, base64.
    pub data: Option<Str<'a>>,
    /// `externalPayloads`: `[{"sizeBytes": "123"}]`.
    pub external_payloads: Vec<ExternalJson>,
    /// Fields this build does not know, kept as they came.
    pub extra: Map<String, Value>,
}

/// One `ExternalPayloadDetails`. proto3 JSON writes int64 as a string; a
/// number is accepted too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExternalJson {
    /// `sizeBytes`.
    #[serde(default, rename = "sizeBytes", skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<Value>,
    /// Fields this build does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ExternalJson {
    /// `sizeBytes` as an integer (0 when absent), if it is one.
    fn size_bytes(&self) -> Option<i64> {
        match &self.size_bytes {
            None => Some(0),
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            Some(_) => None,
        }
    }
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

/// Decodes base64 into `out` (cleared first). proto3 JSON accepts standard and
/// URL-safe base64, padded or not.
fn b64_into(text: &str, out: &mut Vec<u8>) -> bool {
    let trimmed = text.trim_end_matches('=');
    out.clear();
    if STANDARD_NO_PAD.decode_vec(trimmed, out).is_ok() {
        return true;
    }
    out.clear();
    URL_SAFE_NO_PAD.decode_vec(trimmed, out).is_ok()
}

fn b64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    b64_into(text, &mut out).then_some(out)
}

impl<'de> Deserialize<'de> for PayloadsJson<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = PayloadsJson<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with a \"payloads\" array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = PayloadsJson::default();
                let mut seen = false;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if key.as_str() == "payloads" {
                        if std::mem::replace(&mut seen, true) {
                            return Err(de::Error::duplicate_field("payloads"));
                        }
                        body.payloads = map.next_value()?;
                    } else {
                        body.extra.insert(key.0.into_owned(), map.next_value()?);
                    }
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(BodyVisitor)
    }
}

/// The metadata object, its pairs in order.
struct Metadata<'a>(Vec<(Str<'a>, Str<'a>)>);

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of base64 strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(2));
                while let Some(entry) = map.next_entry()? {
                    pairs.push(entry);
                }
                Ok(Metadata(pairs))
            }
        }
        deserializer.deserialize_map(MetadataVisitor)
    }
}

impl<'de> Deserialize<'de> for PayloadJson<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;
        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = PayloadJson<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a payload object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut payload = PayloadJson::default();
                let (mut metadata, mut external) = (false, false);
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.as_str() {
                        "metadata" => {
                            if std::mem::replace(&mut metadata, true) {
                                return Err(de::Error::duplicate_field("metadata"));
                            }
                            payload.metadata = map.next_value::<Metadata<'de>>()?.0;
                        }
                        "data" => {
                            if payload.data.is_some() {
                                return Err(de::Error::duplicate_field("data"));
                            }
                            payload.data = Some(map.next_value()?);
                        }
                        "externalPayloads" => {
                            if std::mem::replace(&mut external, true) {
                                return Err(de::Error::duplicate_field("externalPayloads"));
                            }
                            payload.external_payloads = map.next_value()?;
                        }
                        _ => {
                            payload.extra.insert(key.0.into_owned(), map.next_value()?);
                        }
                    }
                }
                Ok(payload)
            }
        }
        deserializer.deserialize_map(PayloadVisitor)
    }
}

impl Serialize for PayloadJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.metadata.is_empty() {
            map.serialize_entry("metadata", &MetadataPairs(&self.metadata))?;
        }
        if let Some(data) = self.data.as_ref().filter(|d| !d.as_str().is_empty()) {
            map.serialize_entry("data", data)?;
        }
        if !self.external_payloads.is_empty() {
            map.serialize_entry("externalPayloads", &self.external_payloads)?;
        }
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct MetadataPairs<'a, 'b>(&'b [(Str<'a>, Str<'a>)]);

impl Serialize for MetadataPairs<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'a> PayloadsJson<'a> {
    /// Parses a request body, borrowing its strings.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Splits the request into the payloads the codec must work on, decoded
    /// from base64, and the [`Answer`] that puts the codec's output back in
    /// place. `select` sees each payload's `encoding` (decoded; `None` when
    /// there is none) and says whether the codec works on it; the others are
    /// answered as they came. Every payload's base64 is checked, selected or
    /// not: a malformed request is an error either way.
    pub fn split(
        self,
        select: impl Fn(Option<&[u8]>) -> bool,
    ) -> Result<(Vec<Payload>, Answer<'a>), JsonError> {
        let mut inputs = Vec::new();
        let mut slots = Vec::with_capacity(self.payloads.len());
        let mut scratch = Vec::new();
        for (index, json) in self.payloads.into_iter().enumerate() {
            // As in a map, the last of repeated keys counts.
            let encoding = match json
                .metadata
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == ENCODING)
            {
                Some((_, value)) => {
                    if !b64_into(value.as_str(), &mut scratch) {
                        return Err(JsonError::Metadata {
                            index,
                            key: ENCODING.to_owned(),
                        });
                    }
                    Some(scratch.as_slice())
                }
                None => None,
            };
            if select(encoding) {
                inputs.push(json.to_payload(index)?);
                slots.push(Slot::Coded(index));
            } else {
                json.check(index, &mut scratch)?;
                slots.push(Slot::Kept(json));
            }
        }
        Ok((
            inputs,
            Answer {
                slots,
                extra: self.extra,
            },
        ))
    }
}

impl PayloadJson<'_> {
    /// The payload this JSON describes.
    pub fn to_payload(&self, index: usize) -> Result<Payload, JsonError> {
        // Inserted one by one: collecting a map sorts a vector first, which
        // costs more than it saves for a payload's two or three entries.
        let mut metadata = BTreeMap::new();
        for (k, v) in &self.metadata {
            let bytes = b64(v.as_str()).ok_or_else(|| JsonError::Metadata {
                index,
                key: k.as_str().to_owned(),
            })?;
            metadata.insert(k.as_str().to_owned(), bytes);
        }
        let data = match &self.data {
            Some(data) => b64(data.as_str()).ok_or(JsonError::Data { index })?,
            None => Vec::new(),
        };
        let external_payloads = self
            .external_payloads
            .iter()
            .map(|e| {
                let size_bytes = e.size_bytes().ok_or(JsonError::SizeBytes { index })?;
                Ok(ExternalPayloadDetails { size_bytes })
            })
            .collect::<Result<_, _>>()?;
        Ok(Payload {
            metadata,
            data: data.into(),
            external_payloads,
        })
    }

    /// Checks the base64 of a payload that is passed through, without keeping
    /// the bytes.
    fn check(&self, index: usize, scratch: &mut Vec<u8>) -> Result<(), JsonError> {
        for (k, v) in &self.metadata {
            if !b64_into(v.as_str(), scratch) {
                return Err(JsonError::Metadata {
                    index,
                    key: k.as_str().to_owned(),
                });
            }
        }
        if let Some(data) = &self.data
            && !b64_into(data.as_str(), scratch)
        {
            return Err(JsonError::Data { index });
        }
        if self
            .external_payloads
            .iter()
            .any(|e| e.size_bytes().is_none())
        {
            return Err(JsonError::SizeBytes { index });
        }
        Ok(())
    }
}

/// Where each payload of the answer comes from.
#[derive(Debug)]
enum Slot<'a> {
    /// Passed through: the request's JSON, unknown fields and all.
    Kept(PayloadJson<'a>),
    /// The codec's next output; the payload's index in the request.
    Coded(usize),
}

/// The answer to a request: its passed-through payloads, and places for the
/// codec's output.
#[derive(Debug)]
pub struct Answer<'a> {
    slots: Vec<Slot<'a>>,
    extra: Map<String, Value>,
}

impl Answer<'_> {
    /// The index in the request of the codec's `input`-th payload.
    pub fn request_index(&self, input: usize) -> Option<usize> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Coded(index) => Some(*index),
                Slot::Kept(_) => None,
            })
            .nth(input)
    }

    /// A codec error about the selected payloads, naming the failing payload
    /// by its index in the request.
    pub fn in_request(&self, e: CodecError) -> CodecError {
        match e.index().and_then(|i| self.request_index(i)) {
            Some(index) => e.at_index(index),
            None => e,
        }
    }

    /// The response body, with `outputs` (one per selected payload, in order)
    /// in their places.
    pub fn to_json(&self, outputs: &[Payload]) -> Result<Vec<u8>, serde_json::Error> {
        let mut body = Vec::with_capacity(
            outputs
                .iter()
                .map(|p| p.data.len() / 3 * 4 + 128)
                .sum::<usize>()
                + 64,
        );
        serde_json::to_writer(&mut body, &Response(self, outputs))?;
        Ok(body)
    }
}

struct Response<'a, 'b>(&'b Answer<'a>, &'b [Payload]);

impl Serialize for Response<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Response(answer, outputs) = self;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("payloads", &Payloads(answer, outputs))?;
        for (k, v) in &answer.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct Payloads<'a, 'b>(&'b Answer<'a>, &'b [Payload]);

impl Serialize for Payloads<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Payloads(answer, outputs) = self;
        let mut outputs = outputs.iter();
        let mut seq = serializer.serialize_seq(Some(answer.slots.len()))?;
        for slot in &answer.slots {
            match slot {
                Slot::Kept(json) => seq.serialize_element(json)?,
                Slot::Coded(_) => {
                    let out = outputs
                        .next()
                        .ok_or_else(|| ser::Error::custom("the codec returned too few payloads"))?;
                    seq.serialize_element(&Coded(out))?;
                }
            }
        }
        if outputs.next().is_some() {
            return Err(ser::Error::custom("the codec returned too many payloads"));
        }
        seq.end()
    }
}

/// A payload the codec produced, as JSON; base64 is written straight into the
/// output.
struct Coded<'a>(&'a Payload);

struct B64<'a>(&'a [u8]);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

struct External(i64);

impl Serialize for External {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("sizeBytes", &self.0.to_string())?;
        map.end()
    }
}

impl Serialize for Coded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let payload = self.0;
        let mut map = serializer.serialize_map(None)?;
        if !payload.metadata.is_empty() {
            map.serialize_entry("metadata", &CodedMetadata(payload))?;
        }
        if !payload.data.is_empty() {
            map.serialize_entry("data", &B64(&payload.data))?;
        }
        if !payload.external_payloads.is_empty() {
            let external: Vec<External> = payload
                .external_payloads
                .iter()
                .map(|e| External(e.size_bytes))
                .collect();
            map.serialize_entry("externalPayloads", &external)?;
        }
        map.end()
    }
}

struct CodedMetadata<'a>(&'a Payload);

impl Serialize for CodedMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.metadata.len()))?;
        for (k, v) in &self.0.metadata {
            map.serialize_entry(k, &B64(v))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcodec::Bytes;

    fn enc(text: &str) -> String {
        STANDARD.encode(text)
    }

    #[test]
    fn passed_through_payloads_come_back_as_they_came() {
        let body = format!(
            r#"{{"payloads":[{{"metadata":{{"encoding":"{}","z":"","a":"{}"}},"data":"eyJhIjoxfQ","future":[1,2]}},{{"externalPayloads":[{{"sizeBytes":7,"other":true}}]}}],"top":{{"level":1}}}}"#,
            enc("json/plain"),
            enc("1")
        );
        let request = PayloadsJson::parse(body.as_bytes()).unwrap();
        let (inputs, answer) = request.split(|_| false).unwrap();
        assert!(inputs.is_empty());
        // Byte for byte, metadata order included.
        assert_eq!(
            String::from_utf8(answer.to_json(&[]).unwrap()).unwrap(),
            body
        );
    }

    #[test]
    fn coded_payloads_take_their_places_and_errors_name_request_indices() {
        let body = serde_json::json!({"payloads": [
            {"metadata": {"encoding": enc("json/plain")}, "data": enc("kept")},
            {"metadata": {"encoding": enc("mine")}, "data": enc("one")},
            {"metadata": {"encoding": enc("mine")}, "data": "bm9fcGFk"},
        ]})
        .to_string();
        let request = PayloadsJson::parse(body.as_bytes()).unwrap();
        let (inputs, answer) = request.split(|e| e == Some(b"mine")).unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[1].data, &b"no_pad"[..]);
        assert_eq!(answer.request_index(0), Some(1));
        assert_eq!(answer.request_index(1), Some(2));
        assert_eq!(answer.request_index(2), None);

        let mut outputs = inputs.clone();
        outputs[0].data = Bytes::from_static(b"\xff\x00");
        outputs[1].external_payloads = vec![ExternalPayloadDetails { size_bytes: 9 }];
        let out: Value = serde_json::from_slice(&answer.to_json(&outputs).unwrap()).unwrap();
        assert_eq!(out["payloads"][0]["data"], enc("kept"));
        assert_eq!(out["payloads"][1]["data"], "/wA=");
        assert_eq!(out["payloads"][2]["data"], enc("no_pad"));
        assert_eq!(
            out["payloads"][2]["externalPayloads"],
            serde_json::json!([{"sizeBytes": "9"}])
        );
        assert!(answer.to_json(&outputs[..1]).is_err());
        assert!(
            answer
                .to_json(&[outputs[0].clone(), outputs[1].clone(), outputs[1].clone()])
                .is_err()
        );
    }

    #[test]
    fn bad_base64_is_refused_whether_or_not_the_codec_wants_the_payload() {
        for select in [true, false] {
            let check = |body: &str| {
                PayloadsJson::parse(body.as_bytes())
                    .unwrap()
                    .split(|_| select)
                    .map(|_| ())
            };
            assert!(matches!(
                check(r#"{"payloads":[{"data":"%%%"}]}"#),
                Err(JsonError::Data { index: 0 })
            ));
            assert!(matches!(
                check(r#"{"payloads":[{},{"metadata":{"x":"!"}}]}"#),
                Err(JsonError::Metadata { index: 1, .. })
            ));
        }
        // The encoding is read before selecting: a bad one is refused up front.
        let bad = PayloadsJson::parse(br#"{"payloads":[{"metadata":{"encoding":"*"}}]}"#)
            .unwrap()
            .split(|_| false);
        assert!(matches!(bad, Err(JsonError::Metadata { index: 0, .. })));
    }

    #[test]
    fn escaped_strings_and_url_safe_base64_are_read() {
        let body =
            br#"{"payloads":[{"metadata":{"enc\u006fding":"anNvbi9wbGFpbg=="},"data":"_-8"}]}"#;
        let (inputs, _) = PayloadsJson::parse(body).unwrap().split(|_| true).unwrap();
        assert_eq!(inputs[0].encoding(), Some(&b"json/plain"[..]));
        assert_eq!(inputs[0].data, &[0xff, 0xef][..]);
    }

    #[test]
    fn duplicate_fields_are_malformed() {
        for body in [
            r#"{"payloads":[],"payloads":[]}"#,
            r#"{"payloads":[{"data":"","data":""}]}"#,
            r#"{"payloads":[{"metadata":{},"metadata":{}}]}"#,
        ] {
            assert!(PayloadsJson::parse(body.as_bytes()).is_err(), "{body}");
        }
    }
}
