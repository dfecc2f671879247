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

use std::io::Write as _;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{self, SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tcodec::{Codec, CodecError, Decoded, ExternalPayloadDetails, Payload, PayloadParts};

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
    let body = match endpoint {
        Endpoint::Encode => {
            let (payloads, answer) = request.split(|_| true).map_err(ProcessError::Payload)?;
            let out = codec.encode(&payloads).map_err(ProcessError::Codec)?;
            answer.to_json(&out).map_err(ProcessError::Write)?
        }
        Endpoint::Decode => decode(codec, &request, body.len())?,
    };
    Ok((body, count))
}

/// Answers a `/decode` request payload by payload. Each payload's base64 is
/// decoded into buffers that serve the whole request (which checks it).
/// Payloads the codec does not work on are then written back as they came;
/// the others are decrypted where their data was decoded, by the codec's
/// [`Decoder`](tcodec::Decoder), and written from there: no [`Payload`] is
/// built for them in the common case.
fn decode(
    codec: &Codec,
    request: &PayloadsJson<'_>,
    size_hint: usize,
) -> Result<Vec<u8>, ProcessError> {
    let mut out = Writer::new(size_hint);
    let mut decoder = codec.decoder();
    let (mut data, mut values, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    for (index, json) in request.payloads.iter().enumerate() {
        out.next_payload();
        json.decode_parts(index, &mut values, &mut ends, &mut data)
            .map_err(ProcessError::Payload)?;
        let external = json.external(index).map_err(ProcessError::Payload)?;
        let mut pairs = [("", &[][..]); INLINE_METADATA];
        let many: Vec<(&str, &[u8])>;
        let metadata = if json.metadata.len() <= INLINE_METADATA {
            for (pair, value) in pairs.iter_mut().zip(json.pairs(&values, &ends)) {
                *pair = value;
            }
            &pairs[..json.metadata.len()]
        } else {
            many = json.pairs(&values, &ends).collect();
            &many[..]
        };
        // As in a map, the last of repeated keys counts.
        let encoding = metadata.iter().rev().find(|(k, _)| *k == ENCODING);
        if !codec.decodes(encoding.map(|(_, v)| *v)) {
            // Checked all the same (its base64 was decoded above).
            out.json(json)?;
            continue;
        }
        let parts = PayloadParts {
            metadata,
            external_payloads: &external,
        };
        match decoder
            .decode_in_place(index, parts, &mut data)
            .map_err(ProcessError::Codec)?
        {
            Decoded::View(view) => {
                out.payload(view.metadata().iter().copied(), view.data(), &[])?
            }
            Decoded::Owned(p) => out.owned(&p)?,
        }
    }
    out.finish(&request.extra)
}

/// Metadata pairs of one payload the decode path holds without allocating.
const INLINE_METADATA: usize = 8;

/// Writes an answer body: `{"payloads":[...]` then the request's other
/// top-level fields. Base64 is written straight into the body.
struct Writer {
    body: Vec<u8>,
    first: bool,
}

impl Writer {
    fn new(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity);
        body.extend_from_slice(b"{\"payloads\":[");
        Self { body, first: true }
    }

    /// Starts the next element of the payloads array.
    fn next_payload(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.body.push(b',');
        }
    }

    /// A value as serde writes it (a passed-through payload, a top-level field).
    fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProcessError> {
        serde_json::to_writer(&mut self.body, value).map_err(ProcessError::Write)
    }

    /// A payload the codec produced. Empty metadata, data and external
    /// details are left out, as proto3 JSON does.
    fn payload<'k>(
        &mut self,
        metadata: impl ExactSizeIterator<Item = (&'k str, &'k [u8])>,
        data: &[u8],
        external: &[ExternalPayloadDetails],
    ) -> Result<(), ProcessError> {
        self.body.push(b'{');
        let mut comma = false;
        if metadata.len() > 0 {
            self.body.extend_from_slice(b"\"metadata\":{");
            for (i, (k, v)) in metadata.enumerate() {
                if i > 0 {
                    self.body.push(b',');
                }
                self.json(k)?;
                self.body.push(b':');
                self.base64(v);
            }
            self.body.push(b'}');
            comma = true;
        }
        if !data.is_empty() {
            if std::mem::replace(&mut comma, true) {
                self.body.push(b',');
            }
            self.body.extend_from_slice(b"\"data\":");
            self.base64(data);
        }
        if !external.is_empty() {
            if comma {
                self.body.push(b',');
            }
            self.body.extend_from_slice(b"\"externalPayloads\":[");
            for (i, e) in external.iter().enumerate() {
                if i > 0 {
                    self.body.push(b',');
                }
                // proto3 JSON writes int64 as a string.
                write!(self.body, "{{\"sizeBytes\":\"{}\"}}", e.size_bytes)
                    .map_err(|e| ProcessError::Write(serde_json::Error::io(e)))?;
            }
            self.body.push(b']');
        }
        self.body.push(b'}');
        Ok(())
    }

    /// [`payload`](Self::payload) for a [`Payload`].
    fn owned(&mut self, p: &Payload) -> Result<(), ProcessError> {
        self.payload(
            p.metadata.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            &p.data,
            &p.external_payloads,
        )
    }

    /// `bytes` as a quoted base64 string.
    fn base64(&mut self, bytes: &[u8]) {
        self.body.push(b'"');
        base64_simd::STANDARD.encode_append(bytes, &mut self.body);
        self.body.push(b'"');
    }

    /// Closes the payloads array, adds the request's other top-level fields,
    /// and hands over the body.
    fn finish(mut self, extra: &Map<String, Value>) -> Result<Vec<u8>, ProcessError> {
        self.body.push(b']');
        for (k, v) in extra {
            self.body.push(b',');
            self.json(k)?;
            self.body.push(b':');
            self.json(v)?;
        }
        self.body.push(b'}');
        Ok(self.body)
    }
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
#[derive(Clone, Default)]
pub struct PayloadsJson<'a> {
    /// The payloads, in order.
    pub payloads: Vec<PayloadJson<'a>>,
    /// Fields beside `payloads`, kept as they came.
    pub extra: Map<String, Value>,
}

/// One payload, as it came.
#[derive(Clone, Default)]
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

// Both print the request's shape only: its strings are payload data.
impl fmt::Debug for PayloadsJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadsJson")
            .field("payloads", &self.payloads)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for PayloadJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.metadata.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("PayloadJson")
            .field("metadata_keys", &keys)
            .field("data_len", &self.data.as_ref().map(|d| d.as_str().len()))
            .field("external_payloads", &self.external_payloads.len())
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
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
    out.clear();
    b64_append(text, out)
}

/// Decodes base64 onto the end of `out`; on failure `out` is as it was.
/// Strict: trailing bits must be zero, as in the `base64` crate's engines
/// (a test compares the two).
fn b64_append(text: &str, out: &mut Vec<u8>) -> bool {
    let trimmed = text.trim_end_matches('=');
    let start = out.len();
    for engine in [&base64_simd::STANDARD_NO_PAD, &base64_simd::URL_SAFE_NO_PAD] {
        if engine.decode_append(trimmed, out).is_ok() {
            return true;
        }
        out.truncate(start);
    }
    false
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
            if select(json.encoding(index, &mut scratch)?) {
                inputs.push(json.to_payload(index)?);
                slots.push(Slot::Coded);
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

impl<'a> PayloadJson<'a> {
    /// The `encoding` metadata, decoded into `scratch` (`None` when there is
    /// none). As in a map, the last of repeated keys counts.
    fn encoding<'s>(
        &self,
        index: usize,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Option<&'s [u8]>, JsonError> {
        match self
            .metadata
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == ENCODING)
        {
            Some((_, value)) => {
                if !b64_into(value.as_str(), scratch) {
                    return Err(JsonError::Metadata {
                        index,
                        key: ENCODING.to_owned(),
                    });
                }
                Ok(Some(scratch.as_slice()))
            }
            None => Ok(None),
        }
    }

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
        Ok(Payload {
            metadata,
            data: data.into(),
            external_payloads: self.external(index)?,
        })
    }

    /// Decodes the payload's base64 into buffers the caller reuses: the
    /// metadata values one after another into `values` (where each ends into
    /// `ends`), the data into `data`. Checks what
    /// [`to_payload`](Self::to_payload) checks, in the same order.
    fn decode_parts(
        &self,
        index: usize,
        values: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        data: &mut Vec<u8>,
    ) -> Result<(), JsonError> {
        values.clear();
        ends.clear();
        for (k, v) in &self.metadata {
            if !b64_append(v.as_str(), values) {
                return Err(JsonError::Metadata {
                    index,
                    key: k.as_str().to_owned(),
                });
            }
            ends.push(values.len());
        }
        data.clear();
        if let Some(text) = &self.data
            && !b64_into(text.as_str(), data)
        {
            return Err(JsonError::Data { index });
        }
        Ok(())
    }

    /// The metadata pairs over what [`decode_parts`](Self::decode_parts) wrote.
    fn pairs<'v>(
        &'v self,
        values: &'v [u8],
        ends: &'v [usize],
    ) -> impl Iterator<Item = (&'v str, &'v [u8])> {
        let starts = std::iter::once(0).chain(ends.iter().copied());
        self.metadata
            .iter()
            .zip(starts.zip(ends.iter().copied()))
            .map(|((k, _), (start, end))| (k.as_str(), &values[start..end]))
    }

    /// The external payload details.
    fn external(&self, index: usize) -> Result<Vec<ExternalPayloadDetails>, JsonError> {
        self.external_payloads
            .iter()
            .map(|e| {
                let size_bytes = e.size_bytes().ok_or(JsonError::SizeBytes { index })?;
                Ok(ExternalPayloadDetails { size_bytes })
            })
            .collect()
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
    /// The codec's next output.
    Coded,
}

/// The answer to a request: its passed-through payloads, and places for the
/// codec's output.
pub struct Answer<'a> {
    slots: Vec<Slot<'a>>,
    extra: Map<String, Value>,
}

impl fmt::Debug for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("slots", &self.slots)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Answer<'_> {
    /// The response body, with `outputs` (one per selected payload, in order)
    /// in their places.
    pub fn to_json(&self, outputs: &[Payload]) -> Result<Vec<u8>, serde_json::Error> {
        let capacity = outputs
            .iter()
            .map(|p| p.data.len() / 3 * 4 + 128)
            .sum::<usize>()
            + 64;
        let mut out = Writer::new(capacity);
        let mut outputs = outputs.iter();
        let write = |e: ProcessError| match e {
            ProcessError::Write(e) => e,
            other => ser::Error::custom(other),
        };
        for slot in &self.slots {
            out.next_payload();
            match slot {
                Slot::Kept(json) => out.json(json).map_err(write)?,
                Slot::Coded => {
                    let p = outputs
                        .next()
                        .ok_or_else(|| ser::Error::custom("the codec returned too few payloads"))?;
                    out.owned(p).map_err(write)?;
                }
            }
        }
        if outputs.next().is_some() {
            return Err(ser::Error::custom("the codec returned too many payloads"));
        }
        out.finish(&self.extra).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

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
    fn coded_payloads_take_their_places() {
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

    fn codec(compression: tcodec::Compression) -> Codec {
        use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
        let keyring =
            MemoryKeyring::with_primary(KeyId::new("k1").unwrap(), SecretBytes32::new([5; 32]));
        Codec::with_options(
            std::sync::Arc::new(keyring),
            tcodec::CodecOptions::default().with_compression(compression),
        )
    }

    /// The JSON of `payloads` as the UI sends it, with an unknown top-level
    /// field.
    fn body_of(payloads: &[Payload]) -> Vec<u8> {
        let list: Vec<Value> = payloads
            .iter()
            .map(|p| {
                let metadata: Map<String, Value> = p
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), STANDARD.encode(v).into()))
                    .collect();
                serde_json::json!({"metadata": metadata, "data": STANDARD.encode(&p.data)})
            })
            .collect();
        serde_json::json!({"payloads": list, "next": "t"})
            .to_string()
            .into_bytes()
    }

    /// The answer the batch path gives: every payload the codec works on
    /// made a `Payload`, decoded together, put back in place.
    fn batch_answer(codec: &Codec, body: &[u8]) -> Vec<u8> {
        let (payloads, answer) = PayloadsJson::parse(body)
            .unwrap()
            .split(|e| codec.decodes(e))
            .unwrap();
        answer
            .to_json(&codec.decode_owned(payloads).unwrap())
            .unwrap()
    }

    #[test]
    fn decode_answers_as_the_batch_path_does() {
        let plain = codec(tcodec::Compression::Off);
        // The last is long and repetitive, so that zstd takes it.
        let records: Vec<Payload> = (0..4)
            .map(|i| {
                Payload::new(
                    "json/plain",
                    format!("{{\"n\":\"{}\"}}", "ab".repeat(i * 200)).into_bytes(),
                )
            })
            .collect();
        let mut protobuf = Payload::new("binary/protobuf", vec![1, 2, 3]);
        protobuf
            .metadata
            .insert("messageType".into(), b"temporal.Thing".to_vec());
        let sealed = plain.encode(&records).unwrap();
        let zstd = codec(tcodec::Compression::Zstd {
            level: 3,
            min_size: 0,
        })
        .encode(&records[3..])
        .unwrap()
        .remove(0);
        assert!(zstd.data.len() < records[3].data.len(), "not compressed");
        let mut mixed = vec![
            sealed[0].clone(),
            records[1].clone(),
            plain
                .encode(std::slice::from_ref(&protobuf))
                .unwrap()
                .remove(0),
            // Sealed twice and compressed: the codec's general path.
            plain.encode(&sealed[2..3]).unwrap().remove(0),
            zstd,
            Payload::new("json/plain", Vec::new()),
        ];
        mixed.push(sealed[1].clone());
        let body = body_of(&mixed);
        let (answer, count) = process(&plain, Endpoint::Decode, &body, 100).unwrap();
        assert_eq!(count, mixed.len());
        assert_eq!(
            String::from_utf8(answer.clone()).unwrap(),
            String::from_utf8(batch_answer(&plain, &body)).unwrap()
        );
        let back: Vec<Payload> = PayloadsJson::parse(&answer)
            .unwrap()
            .split(|_| true)
            .unwrap()
            .0;
        let want = [
            &records[0],
            &records[1],
            &protobuf,
            &records[2],
            &records[3],
            &mixed[5],
            &records[1],
        ];
        assert_eq!(back.iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn decode_errors_name_the_first_bad_payload_in_the_request() {
        let c = codec(tcodec::Compression::Off);
        let sealed = c
            .encode(&[Payload::new("json/plain", b"1".to_vec())])
            .unwrap()
            .remove(0);
        let mut tampered = sealed.clone();
        let mut data = tampered.data.to_vec();
        *data.last_mut().unwrap() ^= 1;
        tampered.data = data.into();
        let body = body_of(&[sealed.clone(), Payload::default(), tampered, sealed]);
        match process(&c, Endpoint::Decode, &body, 100) {
            Err(ProcessError::Codec(CodecError::Decrypt { index: 2, .. })) => {}
            other => panic!("{other:?}"),
        }
        // Bad base64 after a good payload is named by its own index too.
        let mut body: Value = serde_json::from_slice(&body).unwrap();
        body["payloads"][1]["data"] = "%%".into();
        match process(&c, Endpoint::Decode, body.to_string().as_bytes(), 100) {
            Err(ProcessError::Payload(JsonError::Data { index: 1 })) => {}
            other => panic!("{other:?}"),
        }
    }

    /// The SIMD decoder accepts exactly what the `base64` crate's strict
    /// engines accept (standard or URL-safe, padded or not, zero trailing
    /// bits), and decodes it the same: every string of up to five characters
    /// over an alphabet of both kinds of base64, padding and junk.
    #[test]
    fn base64_is_read_as_the_base64_crate_reads_it() {
        let reference = |text: &str| {
            let trimmed = text.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(trimmed)
                .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
                .ok()
        };
        let alphabet = ['A', 'Q', 'g', '/', '+', '-', '_', '=', '%', 'w'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            texts = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            for text in &texts {
                let mut out = vec![7];
                let ok = b64_append(text, &mut out);
                match reference(text) {
                    Some(bytes) => {
                        assert!(ok, "{text:?}");
                        assert_eq!(out[1..], bytes[..], "{text:?}");
                    }
                    None => assert!(!ok && out == [7], "{text:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 10 + 100 + 1_000 + 10_000 + 100_000);
    }

    #[test]
    fn debug_output_shows_the_shape_not_the_strings() {
        let body = br#"{"payloads":[{"metadata":{"encoding":"c2VjcmV0LWVuYw=="},"data":"aHVudGVyMg==","x":"c2VjcmV0LXg="}],"y":"c2VjcmV0LXk="}"#;
        let request = PayloadsJson::parse(body).unwrap();
        let (_, answer) = request.clone().split(|_| false).unwrap();
        for shown in [format!("{request:?}"), format!("{answer:?}")] {
            assert!(
                !shown.contains("c2VjcmV0") && !shown.contains("aHVudGVy"),
                "{shown}"
            );
            assert!(
                shown.contains("encoding") && shown.contains("data_len"),
                "{shown}"
            );
        }
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
