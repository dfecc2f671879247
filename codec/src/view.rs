//! A serialized `Payload` read in place: metadata and data borrowed from the
//! buffer, nothing allocated.
//!
//! This is the decoded side of [`Decoder::decode_in_place`](crate::Decoder::decode_in_place):
//! a caller that writes payloads out in another form (the codec server writes
//! JSON) reads the plaintext where it was decrypted instead of building a
//! [`Payload`] of owned maps and strings for each.
//!
//! The reader is deliberately narrow. It takes the shape every Temporal SDK
//! writes (metadata entries with a key and a value, then data), and for
//! anything else (unknown or repeated fields, external payload details, more
//! than [`MAX_METADATA`] entries, a repeated metadata key, invalid UTF-8, a
//! malformed varint) it declines, and the caller reads the bytes with `prost`.
//! So whenever it answers, its answer is `prost`'s; the tests and the fuzz
//! target check exactly that.

use std::fmt;

use crate::payload::Payload;

/// The most metadata entries a view holds; a payload with more is read by
/// `prost` instead. Temporal SDKs write one to three.
pub const MAX_METADATA: usize = 8;

/// A payload's parts, borrowed from its serialized form.
#[derive(Clone, Copy)]
pub struct PayloadView<'a> {
    metadata: [(&'a str, &'a [u8]); MAX_METADATA],
    len: usize,
    data: &'a [u8],
    serialized: &'a [u8],
}

impl<'a> PayloadView<'a> {
    /// Reads a serialized `temporal.api.common.v1.Payload`, or `None` when it
    /// is not of the shape this reader takes (see the module docs); then
    /// `prost` decides, and may well accept it.
    pub fn parse(mut buf: &'a [u8]) -> Option<Self> {
        let mut view = Self {
            metadata: [("", &[]); MAX_METADATA],
            len: 0,
            data: &[],
            serialized: buf,
        };
        let mut data_seen = false;
        while !buf.is_empty() {
            // Field 1 (metadata entry) and field 2 (data), both length-delimited.
            let key = take_varint(&mut buf)?;
            let field = take_bytes(&mut buf)?;
            match key {
                0x0a if !data_seen && view.len < MAX_METADATA => {
                    view.metadata[view.len] = entry(field)?;
                    view.len += 1;
                }
                0x12 if !data_seen => {
                    view.data = field;
                    data_seen = true;
                }
                _ => return None,
            }
        }
        // A map keeps one value per key, in key order.
        let entries = &mut view.metadata[..view.len];
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        Some(view)
    }

    /// The metadata entries, in key order (as [`Payload::metadata`] iterates).
    pub fn metadata(&self) -> &[(&'a str, &'a [u8])] {
        &self.metadata[..self.len]
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.metadata()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The `encoding` metadata value, if present.
    pub fn encoding(&self) -> Option<&'a [u8]> {
        self.get(crate::wire::METADATA_ENCODING)
    }

    /// The data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The serialized payload it was read from, as it was (metadata in the
    /// order written): what a caller that hands payloads on serialized can
    /// pass on without serializing it again.
    pub fn serialized(&self) -> &'a [u8] {
        self.serialized
    }

    /// The same payload, owned.
    pub fn to_payload(&self) -> Payload {
        Payload {
            metadata: self
                .metadata()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            data: bytes::Bytes::copy_from_slice(self.data),
            external_payloads: Vec::new(),
        }
    }
}

/// One metadata map entry: key (field 1, a string) and value (field 2, bytes),
/// each at most once; an absent one is empty, as in proto3.
fn entry(mut buf: &[u8]) -> Option<(&str, &[u8])> {
    let (mut key, mut value): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    while !buf.is_empty() {
        let tag = take_varint(&mut buf)?;
        let field = take_bytes(&mut buf)?;
        let slot = match tag {
            0x0a => &mut key,
            0x12 => &mut value,
            _ => return None,
        };
        if slot.replace(field).is_some() {
            return None;
        }
    }
    let key = std::str::from_utf8(key.unwrap_or_default()).ok()?;
    Some((key, value.unwrap_or_default()))
}

/// A varint of at most five bytes (enough for a length or a key); longer
/// encodings, valid or not, are left to `prost`.
fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// A length-delimited field's bytes.
fn take_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(take_varint(buf)?).ok()?;
    let (field, rest) = buf.split_at_checked(len)?;
    *buf = rest;
    Some(field)
}

// Shows the shape only: the data is a decrypted payload.
impl fmt::Debug for PayloadView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.metadata().iter().map(|(k, _)| *k).collect();
        f.debug_struct("PayloadView")
            .field("encoding", &self.encoding().map(String::from_utf8_lossy))
            .field("metadata_keys", &keys)
            .field("data_len", &self.data.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn payload(pairs: &[(&str, &[u8])], data: &[u8]) -> Payload {
        Payload {
            metadata: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            data: bytes::Bytes::copy_from_slice(data),
            external_payloads: Vec::new(),
        }
    }

    #[test]
    fn reads_what_prost_writes() {
        for p in [
            payload(&[], b""),
            payload(&[("encoding", b"json/plain")], b"{\"a\":1}"),
            payload(
                &[
                    ("messageType", b"x.Y"),
                    ("encoding", b"json/protobuf"),
                    ("", b""),
                ],
                &[0xff; 300],
            ),
        ] {
            let bytes = p.encode_to_vec();
            let view = PayloadView::parse(&bytes).expect("SDK shape");
            assert_eq!(view.to_payload(), p);
            assert_eq!(view.serialized(), &bytes[..]);
            assert_eq!(view.encoding(), p.encoding());
            let keys: Vec<&str> = view.metadata().iter().map(|(k, _)| *k).collect();
            let want: Vec<&str> = p.metadata.keys().map(String::as_str).collect();
            assert_eq!(keys, want, "key order");
        }
    }

    #[test]
    fn declines_what_it_does_not_take_and_prost_still_decides() {
        let mut external = payload(&[("encoding", b"x")], b"d");
        external
            .external_payloads
            .push(crate::ExternalPayloadDetails { size_bytes: 5 });
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_METADATA)
            .map(|i| (format!("k{i}"), vec![]))
            .collect();
        let many = Payload {
            metadata: many.into_iter().collect(),
            ..Payload::default()
        };
        let cases: Vec<(Vec<u8>, bool)> = vec![
            // (bytes, whether prost accepts them)
            (external.encode_to_vec(), true),
            (many.encode_to_vec(), true),
            // data before metadata, and data twice
            (vec![0x12, 1, b'a', 0x0a, 0], true),
            (vec![0x12, 1, b'a', 0x12, 1, b'b'], true),
            // a repeated key: the last value wins in prost
            (vec![0x0a, 3, 0x0a, 1, b'k', 0x0a, 3, 0x0a, 1, b'k'], true),
            // an unknown varint field
            (vec![0x20, 1], true),
            // a key that is not UTF-8
            (vec![0x0a, 3, 0x0a, 1, 0xff], false),
            // truncated
            (vec![0x12, 5, b'a'], false),
            (vec![0x12], false),
            // a length in a six-byte varint
            (vec![0x12, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, b'a'], true),
        ];
        for (bytes, accepted) in cases {
            assert!(PayloadView::parse(&bytes).is_none(), "{bytes:?}");
            assert_eq!(Payload::decode(&bytes[..]).is_ok(), accepted, "{bytes:?}");
        }
    }

    #[test]
    fn debug_shows_no_data_or_values() {
        let p = payload(
            &[("encoding", b"json/plain"), ("secret", b"s3cret")],
            b"hunter2",
        );
        let bytes = p.encode_to_vec();
        let shown = format!("{:?}", PayloadView::parse(&bytes).expect("SDK shape"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("json/plain") && shown.contains("data_len: 7"),
            "{shown}"
        );
    }
}
