//! The request body, borrowed: proto3 JSON of `temporal.api.common.v1.Payloads`.
//! Strings are borrowed from the body where JSON allows (no escapes), and
//! fields this build does not know are kept, so a payload passed through comes
//! back as it came. Nothing here decodes base64: `process` does, once.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    pub(crate) fn size_bytes(&self) -> Option<i64> {
        match &self.size_bytes {
            None => Some(0),
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            Some(_) => None,
        }
    }
}

impl<'a> PayloadsJson<'a> {
    /// Parses a request body, borrowing its strings. A field given twice is
    /// malformed.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// [`parse`](Self::parse), stopping at the payload after the first
    /// `max_payloads`: `Ok(None)` then, with nothing more read or kept.
    pub fn parse_at_most(
        body: &'a [u8],
        max_payloads: usize,
    ) -> Result<Option<Self>, serde_json::Error> {
        let over = std::cell::Cell::new(false);
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let seed = BodySeed {
            max_payloads,
            over: &over,
        };
        match de::DeserializeSeed::deserialize(seed, &mut deserializer) {
            Ok(parsed) => {
                deserializer.end()?;
                Ok(Some(parsed))
            }
            Err(_) if over.get() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Reads a body, refusing more than `max_payloads` payloads as it goes
/// (`over` says that was why it stopped).
struct BodySeed<'c> {
    max_payloads: usize,
    over: &'c std::cell::Cell<bool>,
}

impl<'de> de::DeserializeSeed<'de> for BodySeed<'_> {
    type Value = PayloadsJson<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(BodyVisitor(Some(self)))
    }
}

/// The payloads array, at most `max_payloads` long.
struct PayloadsSeed<'c>(BodySeed<'c>);

impl<'de> de::DeserializeSeed<'de> for PayloadsSeed<'_> {
    type Value = Vec<PayloadJson<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct SeqVisitor<'c>(BodySeed<'c>);
        impl<'de> Visitor<'de> for SeqVisitor<'_> {
            type Value = Vec<PayloadJson<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of payloads")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut payloads = Vec::new();
                while let Some(payload) = seq.next_element()? {
                    if payloads.len() == self.0.max_payloads {
                        self.0.over.set(true);
                        return Err(de::Error::custom("too many payloads"));
                    }
                    payloads.push(payload);
                }
                Ok(payloads)
            }
        }
        deserializer.deserialize_seq(SeqVisitor(self.0))
    }
}

/// Reads a map's entries, refusing a key it has already seen among `once`.
/// `field` takes each key and its value; it returns false for keys it does
/// not know, which `extra` keeps.
fn visit_fields<'de, A: MapAccess<'de>>(
    mut map: A,
    once: &'static [&'static str],
    mut field: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
    extra: &mut Map<String, Value>,
) -> Result<(), A::Error> {
    let mut seen = [false; 4];
    while let Some(key) = map.next_key::<Str<'de>>()? {
        if let Some(i) = once.iter().position(|f| *f == key.as_str())
            && std::mem::replace(&mut seen[i], true)
        {
            return Err(de::Error::duplicate_field(once[i]));
        }
        if !field(key.as_str(), &mut map)? {
            extra.insert(key.0.into_owned(), map.next_value()?);
        }
    }
    Ok(())
}

/// The body object; with a seed, its payloads array is bounded.
struct BodyVisitor<'c>(Option<BodySeed<'c>>);

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = PayloadsJson<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"payloads\" array")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut payloads = Vec::new();
        let mut extra = Map::new();
        let mut seed = self.0;
        visit_fields(
            map,
            &["payloads"],
            |key, map| {
                if key != "payloads" {
                    return Ok(false);
                }
                payloads = match seed.take() {
                    Some(seed) => map.next_value_seed(PayloadsSeed(seed))?,
                    // Without a seed (plain `parse`): any length.
                    None => map.next_value()?,
                };
                Ok(true)
            },
            &mut extra,
        )?;
        Ok(PayloadsJson { payloads, extra })
    }
}

impl<'de> Deserialize<'de> for PayloadsJson<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BodyVisitor(None))
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
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let mut payload = PayloadJson::default();
                let mut extra = Map::new();
                visit_fields(
                    map,
                    &["metadata", "data", "externalPayloads"],
                    |key, map| {
                        match key {
                            "metadata" => payload.metadata = map.next_value::<Metadata<'de>>()?.0,
                            "data" => payload.data = Some(map.next_value()?),
                            "externalPayloads" => payload.external_payloads = map.next_value()?,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    },
                    &mut extra,
                )?;
                payload.extra = extra;
                Ok(payload)
            }
        }
        deserializer.deserialize_map(PayloadVisitor)
    }
}

/// Written back as it came (a payload passed through): empty fields are left
/// out, as proto3 JSON does.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn duplicate_fields_are_malformed() {
        for body in [
            r#"{"payloads":[],"payloads":[]}"#,
            r#"{"payloads":[{"data":"","data":""}]}"#,
            r#"{"payloads":[{"metadata":{},"metadata":{}}]}"#,
            r#"{"payloads":[{"externalPayloads":[],"externalPayloads":[]}]}"#,
        ] {
            assert!(PayloadsJson::parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn debug_output_shows_the_shape_not_the_strings() {
        let body = br#"{"payloads":[{"metadata":{"encoding":"c2VjcmV0LWVuYw=="},"data":"aHVudGVyMg==","x":"c2VjcmV0LXg="}],"y":"c2VjcmV0LXk="}"#;
        let shown = format!("{:?}", PayloadsJson::parse(body).unwrap());
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("aHVudGVy"),
            "{shown}"
        );
        assert!(
            shown.contains("encoding") && shown.contains("data_len"),
            "{shown}"
        );
    }

    #[test]
    fn escaped_strings_are_read() {
        let body = br#"{"payloads":[{"metadata":{"enc\u006fding":"anNvbi9wbGFpbg=="}}]}"#;
        let request = PayloadsJson::parse(body).unwrap();
        assert_eq!(request.payloads[0].metadata[0].0.as_str(), "encoding");
    }
}
