//! One request body in, its answer out, for either direction. Both go through
//! the same pipeline: parse (borrowing from the body), then per payload decode
//! its base64 once into buffers that serve the whole request (the one place
//! that checks a payload's JSON), hand the parts to the codec, and write what
//! comes back straight into the answer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tcodec::storage::{self, Reference, S3Location, StorageConfig, StorageError};
use tcodec::{
    Codec, CodecError, Decoded, Decoder, Encoder, ExternalPayloadDetails, Payload, PayloadParts,
};

use crate::base64;
use crate::model::{PayloadJson, PayloadsJson};
use crate::writer::{WriteError, Writer};

/// The metadata key naming a payload's encoding.
const ENCODING: &str = "encoding";

/// Metadata pairs of one payload held without allocating.
const INLINE_METADATA: usize = 8;

/// Which way the payloads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Seal every payload under the keyring's primary key (`/encode`).
    Encode,
    /// Open the payloads the codec works on; pass the others through (`/decode`).
    Decode,
}

impl Direction {
    /// `encode` or `decode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode => "decode",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request may cost. Every bound is checked as the request goes,
/// before the step that would cross it allocates.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'c> {
    /// Payloads in the request: the parser stops at the one after.
    pub max_payloads: usize,
    /// Bytes decryption and decompression may produce over the whole request
    /// ([`Decoder::with_budget`]).
    pub max_decoded_bytes: usize,
    /// Bytes of the answer.
    pub max_answer_bytes: usize,
    /// Set by the caller when the answer is no longer wanted (the request
    /// timed out, the client left): checked between payloads.
    pub cancelled: Option<&'c AtomicBool>,
}

impl Limits<'static> {
    /// At most `max_payloads` payloads; no other bound (the CLI's, over its
    /// own input).
    pub fn payloads(max_payloads: usize) -> Self {
        Self {
            max_payloads,
            max_decoded_bytes: usize::MAX,
            max_answer_bytes: usize::MAX,
            cancelled: None,
        }
    }
}

impl Limits<'_> {
    fn cancelled(&self) -> bool {
        self.cancelled.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// An answered request.
#[derive(Debug)]
pub struct Answer {
    /// The answer's body: `{"payloads": [...]}` and the request's other fields.
    pub body: Vec<u8>,
    /// How many payloads it holds (as many as the request did).
    pub payloads: usize,
    /// `/encode` with storage: the sealed payloads the body refers to, each
    /// serialized, with where it goes. The caller stores them all before it
    /// answers.
    pub stored: Vec<Stored>,
}

/// A sealed payload `/encode` replaced by a reference: the caller stores it.
#[derive(Debug)]
pub struct Stored {
    /// The index of the payload in the request.
    pub index: usize,
    /// Where it goes.
    pub location: S3Location,
    /// The serialized sealed payload.
    pub object: Vec<u8>,
}

/// What `/decode` does with External Storage references.
#[derive(Debug, Default)]
pub enum References {
    /// Hands them back as they came (`?preserveStorageRefs=true`, and
    /// `tcodec decode`).
    #[default]
    Keep,
    /// Refuses them: nothing here can fetch them.
    Refuse,
    /// Decodes, in each one's place, the payload fetched for it, by index
    /// ([`references`] lists them).
    Fetched(BTreeMap<usize, Payload>),
}

/// External Storage for one request.
#[derive(Debug, Default)]
pub struct Storage<'a> {
    /// Decoding: what happens to references.
    pub references: References,
    /// Encoding: sealed payloads of at least its threshold become references
    /// to objects in its bucket ([`Answer::stored`]).
    pub store: Option<&'a StorageConfig>,
}

/// Why [`process`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The body is not `{"payloads": [...]}` JSON. The text says what is
    /// wrong and where, never the offending value.
    #[error("not {{\"payloads\": [...]}} JSON: {0}")]
    Json(String),
    /// More payloads than the limit (the parser stopped at the one after).
    #[error("more than {limit} payloads")]
    TooManyPayloads {
        /// The limit.
        limit: usize,
    },
    /// The answer would be larger than the limit.
    #[error("the answer would exceed {limit} bytes")]
    AnswerTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The caller cancelled the work ([`Limits::cancelled`]) after `done`
    /// of the request's `of` payloads.
    #[error("cancelled after {done} of {of} payloads")]
    Cancelled {
        /// Payloads done.
        done: usize,
        /// Payloads in the request.
        of: usize,
    },
    /// A payload's base64 or `externalPayloads` is malformed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The codec refused a payload; the error names it by its index in the
    /// request.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A payload is an External Storage reference that cannot be followed;
    /// the error names it by its index.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The answer could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Why a payload's JSON is not a payload. The key of a bad metadata value is
/// quoted with escapes, so it cannot forge a log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
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

impl PayloadError {
    /// The index of the payload the error is about.
    pub fn index(&self) -> usize {
        match self {
            Self::Metadata { index, .. } | Self::Data { index } | Self::SizeBytes { index } => {
                *index
            }
        }
    }
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

/// One `/encode` or `/decode` body in, its answer out: what the codec server
/// does per request, and `tcodec encode` and `tcodec decode` per input.
/// Nothing partial: the first bad payload fails the request.
pub fn process(
    codec: &Codec,
    direction: Direction,
    body: &[u8],
    limits: &Limits<'_>,
) -> Result<Answer, ProcessError> {
    process_with(codec, direction, body, limits, Storage::default())
}

/// How many payloads a request body holds, and its External Storage
/// references by index: what [`References::Fetched`] needs fetched. A
/// reference that is not one this build reads is an error naming its index.
pub fn references(
    body: &[u8],
    max_payloads: usize,
) -> Result<(usize, Vec<(usize, Reference)>), ProcessError> {
    let request = PayloadsJson::parse_at_most(body, max_payloads)
        .map_err(|e| ProcessError::Json(json_error(&e)))?
        .ok_or(ProcessError::TooManyPayloads {
            limit: max_payloads,
        })?;
    let mut parts = Parts::default();
    let mut found = Vec::new();
    for (index, json) in request.payloads.iter().enumerate() {
        parts.read(index, json)?;
        let metadata: Vec<(&str, &[u8])> = pairs(json, &parts.values, &parts.ends).collect();
        if storage::is_reference(metadata.iter().copied()) {
            let reference = Reference::parse(
                index,
                metadata.iter().copied(),
                &parts.data,
                &parts.external,
            )?;
            found.push((index, reference));
        }
    }
    Ok((request.payloads.len(), found))
}

/// [`process`] with External Storage: references fetched, refused or kept
/// when decoding, large sealed payloads stored when encoding.
pub fn process_with(
    codec: &Codec,
    direction: Direction,
    body: &[u8],
    limits: &Limits<'_>,
    storage: Storage<'_>,
) -> Result<Answer, ProcessError> {
    let Storage {
        mut references,
        store,
    } = storage;
    let mut stored = Vec::new();
    let request = PayloadsJson::parse_at_most(body, limits.max_payloads)
        .map_err(|e| ProcessError::Json(json_error(&e)))?
        .ok_or(ProcessError::TooManyPayloads {
            limit: limits.max_payloads,
        })?;
    let count = request.payloads.len();
    let mut out = Writer::new(body.len().min(limits.max_answer_bytes));
    let mut step = match direction {
        // An empty request needs no key: the encoder is made for the first payload.
        Direction::Encode => Step::Encode(codec, count, None, store, &mut stored),
        Direction::Decode => Step::Decode(
            codec,
            codec.decoder().with_budget(limits.max_decoded_bytes),
            &mut references,
        ),
    };
    let mut parts = Parts::default();
    for (index, json) in request.payloads.iter().enumerate() {
        if limits.cancelled() {
            return Err(ProcessError::Cancelled {
                done: index,
                of: count,
            });
        }
        out.next_payload();
        parts.read(index, json)?;
        step.run(index, json, &mut parts, &mut out, limits.max_answer_bytes)?;
        // The estimate before writing keeps allocations bounded; this keeps
        // the limit exact (a passed-through payload's unknown fields).
        within_answer(out.len(), limits.max_answer_bytes)?;
    }
    drop(step);
    let body = out.finish(&request.extra)?;
    within_answer(body.len(), limits.max_answer_bytes)?;
    Ok(Answer {
        body,
        payloads: count,
        stored,
    })
}

/// What happens to each payload once its parts are read.
// One per request, on the stack: the encoder's size (its cipher and nonce
// pool) is no cost worth a box.
#[allow(clippy::large_enum_variant)]
enum Step<'c> {
    /// The codec, how many payloads the request holds, the encoder once
    /// there is a payload to seal, where large ones go, and what went there.
    Encode(
        &'c Codec,
        usize,
        Option<Encoder<'c>>,
        Option<&'c StorageConfig>,
        &'c mut Vec<Stored>,
    ),
    /// The codec, its decoder, and what happens to references.
    Decode(&'c Codec, Decoder<'c>, &'c mut References),
}

impl Step<'_> {
    fn run(
        &mut self,
        index: usize,
        json: &PayloadJson<'_>,
        parts: &mut Parts,
        out: &mut Writer,
        max_answer: usize,
    ) -> Result<(), ProcessError> {
        // Refuses a payload whose answer would cross the limit, before writing it.
        let fits = |out: &Writer, projected: usize| {
            within_answer(out.len().saturating_add(projected), max_answer)
        };
        let Parts {
            values,
            ends,
            data,
            external,
        } = parts;
        let mut inline = [("", &[][..]); INLINE_METADATA];
        let many: Vec<(&str, &[u8])>;
        let pairs = pairs(json, values, ends);
        let metadata = if json.metadata.len() <= INLINE_METADATA {
            for (slot, pair) in inline.iter_mut().zip(pairs) {
                *slot = pair;
            }
            &inline[..json.metadata.len()]
        } else {
            many = pairs.collect();
            &many[..]
        };
        let payload = PayloadParts {
            metadata,
            external_payloads: external,
        };
        match self {
            Self::Encode(codec, count, encoder, store, stored) => {
                let encoder = match encoder {
                    Some(encoder) => encoder,
                    None => encoder.insert(codec.encoder(*count)?),
                };
                let sealed = encoder.encode(index, &payload.to_payload(data))?;
                if let Some(config) = store {
                    let object = storage::object_bytes(&sealed);
                    if object.len() >= config.threshold {
                        let (location, reference) = config.place(&object);
                        out.owned(&reference.to_payload())?;
                        stored.push(Stored {
                            index,
                            location,
                            object,
                        });
                        return Ok(());
                    }
                }
                fits(out, projected(&sealed.metadata, sealed.data.len()))?;
                out.owned(&sealed)?;
            }
            Self::Decode(codec, decoder, references) => {
                if storage::is_reference(metadata.iter().copied()) {
                    let fetched = match references {
                        References::Keep => {
                            fits(out, projected(metadata.iter().copied(), data.len()))?;
                            return Ok(out.json(json)?);
                        }
                        References::Refuse => None,
                        References::Fetched(fetched) => fetched.remove(&index),
                    };
                    let fetched = fetched.ok_or(StorageError::NotConfigured { index })?;
                    let decoded = decoder.decode_payload(index, fetched)?;
                    fits(out, projected(&decoded.metadata, decoded.data.len()))?;
                    return Ok(out.owned(&decoded)?);
                }
                // As in a map, the last of repeated keys counts.
                let encoding = metadata.iter().rev().find(|(k, _)| *k == ENCODING);
                if !codec.decodes(encoding.map(|(_, v)| *v)) {
                    // Passed through as it came (its base64 was checked above).
                    fits(out, projected(metadata.iter().copied(), data.len()))?;
                    return Ok(out.json(json)?);
                }
                match decoder.decode_in_place(index, payload, data)? {
                    Decoded::View(view) => {
                        let metadata = view.metadata().iter().copied();
                        fits(out, projected(metadata, view.data().len()))?;
                        out.payload(view.metadata().iter().copied(), view.data(), &[])?
                    }
                    Decoded::Owned(p) => {
                        fits(out, projected(&p.metadata, p.data.len()))?;
                        out.owned(&p)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// Refuses an answer of `len` bytes over `limit`.
fn within_answer(len: usize, limit: usize) -> Result<(), ProcessError> {
    if len > limit {
        return Err(ProcessError::AnswerTooLarge { limit });
    }
    Ok(())
}

/// About what a payload of these metadata pairs and `data` bytes takes in
/// the answer (base64 and JSON punctuation): an estimate made before writing.
fn projected<K: AsRef<str>, V: AsRef<[u8]>>(
    metadata: impl IntoIterator<Item = (K, V)>,
    data: usize,
) -> usize {
    metadata
        .into_iter()
        .fold(answer_size(data) + 64, |sum, (k, v)| {
            sum + k.as_ref().len() + answer_size(v.as_ref().len()) + 8
        })
}

/// What `bytes` take in the answer, as base64.
fn answer_size(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// One payload's decoded base64, in buffers reused for every payload of a
/// request: the metadata values one after another in `values` (each ending
/// where `ends` says), the data in `data`.
#[derive(Default)]
struct Parts {
    values: Vec<u8>,
    ends: Vec<usize>,
    data: Vec<u8>,
    external: Vec<ExternalPayloadDetails>,
}

impl Parts {
    /// Decodes and checks `json`, the payload at `index`: every metadata value
    /// and the data must be base64, every `sizeBytes` an integer. The only
    /// check of a payload's JSON, whether the codec then works on it or not.
    fn read(&mut self, index: usize, json: &PayloadJson<'_>) -> Result<(), PayloadError> {
        self.values.clear();
        self.ends.clear();
        for (k, v) in &json.metadata {
            if !base64::decode_append(v.as_str(), &mut self.values) {
                return Err(PayloadError::Metadata {
                    index,
                    key: k.as_str().to_owned(),
                });
            }
            self.ends.push(self.values.len());
        }
        self.data.clear();
        if let Some(text) = &json.data
            && !base64::decode_append(text.as_str(), &mut self.data)
        {
            return Err(PayloadError::Data { index });
        }
        self.external.clear();
        for e in &json.external_payloads {
            let size_bytes = e.size_bytes().ok_or(PayloadError::SizeBytes { index })?;
            self.external.push(ExternalPayloadDetails { size_bytes });
        }
        Ok(())
    }
}

/// The metadata pairs of `json` over what [`Parts::read`] decoded of it.
fn pairs<'v>(
    json: &'v PayloadJson<'_>,
    values: &'v [u8],
    ends: &'v [usize],
) -> impl Iterator<Item = (&'v str, &'v [u8])> {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    json.metadata
        .iter()
        .zip(starts.zip(ends.iter().copied()))
        .map(|((k, _), (start, end))| (k.as_str(), &values[start..end]))
}
