//! The answer body, written as the codec produces it: `{"payloads":[...]`,
//! then the request's other top-level fields. Base64 goes straight into the
//! body; nothing is built per payload.

use serde::Serialize;
use serde_json::{Map, Value};
use tcodec::{ExternalPayloadDetails, Payload};

use crate::base64;

/// Why an answer could not be written: a JSON value that would not serialize.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the answer: {0}")]
pub struct WriteError(#[from] serde_json::Error);

/// Writes one answer body.
pub(crate) struct Writer {
    body: Vec<u8>,
    first: bool,
}

impl Writer {
    /// A writer whose body starts with room for `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity);
        body.extend_from_slice(b"{\"payloads\":[");
        Self { body, first: true }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    /// Starts the next element of the payloads array.
    pub(crate) fn next_payload(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.body.push(b',');
        }
    }

    /// A value as serde writes it (a passed-through payload, a top-level field).
    pub(crate) fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        Ok(serde_json::to_writer(&mut self.body, value)?)
    }

    /// A payload the codec produced. Empty metadata, data and external
    /// details are left out, as proto3 JSON does.
    pub(crate) fn payload<'k>(
        &mut self,
        metadata: impl ExactSizeIterator<Item = (&'k str, &'k [u8])>,
        data: &[u8],
        external: &[ExternalPayloadDetails],
    ) -> Result<(), WriteError> {
        self.body.push(b'{');
        let mut fields = 0;
        if metadata.len() > 0 {
            self.field(&mut fields, b"\"metadata\":{");
            for (i, (k, v)) in metadata.enumerate() {
                if i > 0 {
                    self.body.push(b',');
                }
                self.json(k)?;
                self.body.push(b':');
                base64::encode_quoted(v, &mut self.body);
            }
            self.body.push(b'}');
        }
        if !data.is_empty() {
            self.field(&mut fields, b"\"data\":");
            base64::encode_quoted(data, &mut self.body);
        }
        if !external.is_empty() {
            self.field(&mut fields, b"\"externalPayloads\":[");
            for (i, e) in external.iter().enumerate() {
                if i > 0 {
                    self.body.push(b',');
                }
                // proto3 JSON writes int64 as a string.
                self.body.extend_from_slice(b"{\"sizeBytes\":\"");
                self.body
                    .extend_from_slice(e.size_bytes.to_string().as_bytes());
                self.body.extend_from_slice(b"\"}");
            }
            self.body.push(b']');
        }
        self.body.push(b'}');
        Ok(())
    }

    /// A field's opening `"name":`, after a comma unless it is the first.
    fn field(&mut self, fields: &mut usize, opening: &[u8]) {
        if *fields > 0 {
            self.body.push(b',');
        }
        *fields += 1;
        self.body.extend_from_slice(opening);
    }

    /// [`payload`](Self::payload) for a [`Payload`].
    pub(crate) fn owned(&mut self, p: &Payload) -> Result<(), WriteError> {
        self.payload(
            p.metadata.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            &p.data,
            &p.external_payloads,
        )
    }

    /// Closes the payloads array, adds the request's other top-level fields,
    /// and hands over the body.
    pub(crate) fn finish(mut self, extra: &Map<String, Value>) -> Result<Vec<u8>, WriteError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn empty_fields_are_left_out_and_sizes_are_strings() {
        let mut w = Writer::new(0);
        w.next_payload();
        w.payload(std::iter::empty(), b"", &[]).unwrap();
        w.next_payload();
        let external = [ExternalPayloadDetails { size_bytes: 9 }];
        w.payload([("encoding", &b"x"[..])].into_iter(), b"", &external)
            .unwrap();
        let mut extra = Map::new();
        extra.insert("next".into(), Value::from(1));
        assert_eq!(
            String::from_utf8(w.finish(&extra).unwrap()).unwrap(),
            r#"{"payloads":[{},{"metadata":{"encoding":"eA=="},"externalPayloads":[{"sizeBytes":"9"}]}],"next":1}"#
        );
    }
}
