//! Temporal External Storage, as tcodec reads and writes it: a payload too
//! large for the history is stored in S3 and the history holds a *reference*
//! (a claim check) in Temporal's own shape, so that every SDK's S3 driver, the
//! Web UI and tcodec recognise each other's.
//!
//! A reference is a payload with `encoding: json/protobuf`, `messageType:
//! temporal.api.sdk.v1.ExternalStorageReference`, the message as proto3 JSON
//! (`{"driverName": …, "claimData": {…}}`) as its data, and one
//! `external_payloads` entry giving the stored payload's size. The SDKs apply
//! their payload codec *before* storing, so the object holds the serialized
//! `Payload` the codec produced (for tcodec, `binary/tcodec` ciphertext) and
//! the reference itself is not encrypted: it names a bucket, an object key and
//! the SHA-256 of the object, nothing of the payload.
//!
//! The S3 driver's claim (`aws.s3driver`, as the official drivers write it):
//! `bucket`, `key`, `hash_algorithm` (`sha256`) and `hash_value` (lower-case
//! hex). A reference is attacker data: [`S3Location::from_reference`] takes
//! exactly those four entries, and [`StorageConfig::permit`] refuses any
//! bucket or key prefix the deployment does not configure, before any request
//! is made.
//!
//! Also read: references an earlier release of the SDKs wrote (`encoding:
//! json/external-storage-reference`, `{"driver_name", "driver_claim":
//! {"claim_data"}}`).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use prost::Message;

use crate::payload::{ExternalPayloadDetails, Payload};

#[cfg(feature = "s3")]
pub mod s3;

/// The `encoding` of a reference.
pub const REFERENCE_ENCODING: &str = "json/protobuf";
/// The `messageType` of a reference.
pub const REFERENCE_MESSAGE_TYPE: &str = "temporal.api.sdk.v1.ExternalStorageReference";
/// The `encoding` of references written by earlier SDK releases (read only).
pub const LEGACY_REFERENCE_ENCODING: &str = "json/external-storage-reference";
/// The metadata key naming a `json/protobuf` payload's message type.
pub const MESSAGE_TYPE: &str = "messageType";
/// The name the official S3 drivers give themselves, and tcodec's writer uses.
pub const S3_DRIVER: &str = "aws.s3driver";
/// The SDKs' default threshold: payloads of at least this many bytes
/// (serialized, after the codec) are stored.
pub const DEFAULT_THRESHOLD: usize = 256 << 10;
/// The hash the S3 driver's claims name.
pub const SHA256: &str = "sha256";

/// Why a reference cannot be used. Each names the payload by its index in
/// the batch; bucket names and keys from a reference are quoted with escapes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The payload is a reference but nothing here is configured to fetch it.
    #[error("payload {index}: is an External Storage reference and no storage is configured here")]
    NotConfigured {
        /// Index of the payload.
        index: usize,
    },
    /// The reference is not one this build can read.
    #[error("payload {index}: malformed External Storage reference: {reason}")]
    Malformed {
        /// Index of the payload.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The reference names a driver, bucket or key the configuration does not
    /// allow. Nothing was requested.
    #[error("payload {index}: External Storage reference refused: {reason}")]
    Refused {
        /// Index of the payload.
        index: usize,
        /// What is not allowed.
        reason: String,
    },
    /// The object does not exist (deleted by a lifecycle rule, or never written).
    #[error("payload {index}: stored payload s3://{bucket}/{key} does not exist", bucket = Quoted(bucket), key = Quoted(key))]
    Missing {
        /// Index of the payload.
        index: usize,
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
    },
    /// The object's SHA-256 is not the reference's, or it is no payload.
    #[error("payload {index}: stored payload s3://{bucket}/{key} {reason}", bucket = Quoted(bucket), key = Quoted(key))]
    Tampered {
        /// Index of the payload.
        index: usize,
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// What does not match.
        reason: &'static str,
    },
    /// The object is larger than allowed.
    #[error("payload {index}: stored payload is larger than {limit} bytes")]
    TooLarge {
        /// Index of the payload.
        index: usize,
        /// The limit.
        limit: usize,
    },
    /// The objects one call would fetch, or the payloads they hold counted
    /// once for each reference naming them, exceed what it may read.
    #[error("payload {index}: the stored payloads named here exceed {budget} bytes in all")]
    OverBudget {
        /// Index of the payload that went over.
        index: usize,
        /// The bytes allowed.
        budget: usize,
    },
    /// The store could not be reached or did not answer in time.
    #[error("payload {index}: storage unavailable: {reason}")]
    Unavailable {
        /// Index of the payload.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The store refused the request (permissions, a bad bucket).
    #[error("payload {index}: storage refused the request: {reason}")]
    Failed {
        /// Index of the payload.
        index: usize,
        /// Why.
        reason: String,
    },
}

impl StorageError {
    /// The index of the payload the error is about.
    pub fn index(&self) -> usize {
        match self {
            Self::NotConfigured { index }
            | Self::Malformed { index, .. }
            | Self::Refused { index, .. }
            | Self::Missing { index, .. }
            | Self::Tampered { index, .. }
            | Self::TooLarge { index, .. }
            | Self::OverBudget { index, .. }
            | Self::Unavailable { index, .. }
            | Self::Failed { index, .. } => *index,
        }
    }
}

/// Text from a reference, shown with escapes (no control characters reach a
/// log line) and shortened.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        let mut end = self.0.len().min(MAX);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        for c in self.0[..end].chars() {
            if c.is_control() || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if end < self.0.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Whether a payload of these metadata pairs is an External Storage
/// reference (in either shape). Of repeated keys the last counts.
pub fn is_reference<'a>(metadata: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> bool {
    let (mut encoding, mut message_type) = (None, None);
    for (k, v) in metadata {
        match k {
            crate::wire::METADATA_ENCODING => encoding = Some(v),
            MESSAGE_TYPE => message_type = Some(v),
            _ => {}
        }
    }
    match encoding {
        Some(e) if e == LEGACY_REFERENCE_ENCODING.as_bytes() => true,
        Some(e) if e == REFERENCE_ENCODING.as_bytes() => {
            message_type == Some(REFERENCE_MESSAGE_TYPE.as_bytes())
        }
        _ => false,
    }
}

/// A reference, read.
#[derive(Clone, PartialEq, Eq)]
pub struct Reference {
    /// The driver that stored the payload (its routing name).
    pub driver_name: String,
    /// The driver's claim.
    pub claim: BTreeMap<String, String>,
    /// The stored payload's size, as the reference says (not trusted).
    pub size_bytes: i64,
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reference")
            .field("driver_name", &self.driver_name)
            .field("claim_keys", &self.claim.keys().collect::<Vec<_>>())
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

/// The largest reference read: a claim is a few hundred bytes.
const MAX_REFERENCE_BYTES: usize = 16 << 10;

impl Reference {
    /// Reads the reference at `index` from its metadata pairs, data and
    /// external payload details. The caller has seen [`is_reference`].
    pub fn parse<'a>(
        index: usize,
        metadata: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        data: &[u8],
        external: &[ExternalPayloadDetails],
    ) -> Result<Self, StorageError> {
        let malformed = |reason: &str| StorageError::Malformed {
            index,
            reason: reason.to_owned(),
        };
        let legacy = metadata
            .into_iter()
            .filter(|(k, _)| *k == crate::wire::METADATA_ENCODING)
            .last()
            .is_some_and(|(_, v)| v == LEGACY_REFERENCE_ENCODING.as_bytes());
        if data.len() > MAX_REFERENCE_BYTES {
            return Err(malformed("larger than a reference can be"));
        }
        let value: serde_json::Value =
            serde_json::from_slice(data).map_err(|_| malformed("its data is not JSON"))?;
        let object = value
            .as_object()
            .ok_or_else(|| malformed("its data is not a JSON object"))?;
        let field = |camel: &str, snake: &str| object.get(camel).or_else(|| object.get(snake));
        let driver_name = field("driverName", "driver_name")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("driverName is missing or not a string"))?
            .to_owned();
        let claim = if legacy {
            field("driverClaim", "driver_claim")
                .and_then(|c| c.get("claimData").or_else(|| c.get("claim_data")))
        } else {
            field("claimData", "claim_data")
        };
        let claim = claim
            .and_then(|c| c.as_object())
            .ok_or_else(|| malformed("claimData is missing or not an object"))?
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_owned())),
                None => Err(malformed("a claimData value is not a string")),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let size_bytes = match external {
            [] => 0,
            [one] => one.size_bytes,
            _ => return Err(malformed("more than one externalPayloads entry")),
        };
        Ok(Self {
            driver_name,
            claim,
            size_bytes,
        })
    }

    /// The reference as a payload, in the shape the SDKs write.
    pub fn to_payload(&self) -> Payload {
        let mut claim = serde_json::Map::new();
        for (k, v) in &self.claim {
            claim.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let message = serde_json::json!({
            "driverName": self.driver_name,
            "claimData": claim,
        });
        let mut payload = Payload::new(REFERENCE_ENCODING, message.to_string().into_bytes());
        payload.metadata.insert(
            MESSAGE_TYPE.to_owned(),
            REFERENCE_MESSAGE_TYPE.as_bytes().to_vec(),
        );
        payload.external_payloads.push(ExternalPayloadDetails {
            size_bytes: self.size_bytes,
        });
        payload
    }
}

/// Where an S3 driver's reference says its payload is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct S3Location {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// SHA-256 of the object.
    pub sha256: [u8; 32],
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", Quoted(&self.bucket), Quoted(&self.key))
    }
}

/// The claim entries of the S3 driver, exactly.
const CLAIM_KEYS: [&str; 4] = ["bucket", "hash_algorithm", "hash_value", "key"];

impl S3Location {
    /// The location `reference` (the payload at `index`) names, if it is an
    /// S3 driver's claim of exactly the expected entries.
    pub fn from_reference(index: usize, reference: &Reference) -> Result<Self, StorageError> {
        let malformed = |reason: String| StorageError::Malformed { index, reason };
        if !reference.claim.keys().map(String::as_str).eq(CLAIM_KEYS) {
            return Err(malformed(format!(
                "an S3 claim has exactly the entries {CLAIM_KEYS:?}"
            )));
        }
        let get = |k: &str| reference.claim.get(k).map(String::as_str).unwrap_or("");
        if get("hash_algorithm") != SHA256 {
            return Err(malformed(format!("hash_algorithm must be {SHA256}")));
        }
        let mut sha256 = [0u8; 32];
        let hex = get("hash_value");
        if hex.len() != 64 || hex.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed(
                "hash_value must be 64 lower-case hex digits".into(),
            ));
        }
        for (i, byte) in sha256.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        let (bucket, key) = (get("bucket"), get("key"));
        if bucket.is_empty() || key.is_empty() || key.len() > 1024 {
            return Err(malformed(
                "bucket and key must be non-empty, the key at most 1024 bytes".into(),
            ));
        }
        if key.chars().chain(bucket.chars()).any(char::is_control) {
            return Err(malformed(
                "bucket and key must hold no control characters".into(),
            ));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            sha256,
        })
    }

    /// The SHA-256 as the claim writes it.
    pub fn hash_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// The reference to this location, for a stored payload of `size` bytes.
    pub fn reference(&self, driver_name: &str, size: usize) -> Reference {
        let claim = [
            ("bucket", self.bucket.clone()),
            ("hash_algorithm", SHA256.to_owned()),
            ("hash_value", self.hash_hex()),
            ("key", self.key.clone()),
        ];
        Reference {
            driver_name: driver_name.to_owned(),
            claim: claim.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a deployment stores payloads and which references it follows: one
/// bucket, and a key prefix every object it reads or writes starts with.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The bucket.
    pub bucket: String,
    /// Objects are read only under this prefix and written under it
    /// (`{prefix}d/sha256/{hex}`).
    pub prefix: String,
    /// The driver name references carry (and must carry to be followed).
    pub driver_name: String,
    /// Payloads whose serialized size (sealed) is at least this are stored.
    pub threshold: usize,
    /// The largest object read.
    pub max_object_bytes: usize,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("driver_name", &self.driver_name)
            .field("threshold", &self.threshold)
            .field("max_object_bytes", &self.max_object_bytes)
            .finish()
    }
}

impl StorageConfig {
    /// Storage in `bucket` for `namespace`: keys under `v0/ns/{namespace}/`,
    /// where the official S3 drivers write that namespace's payloads, the
    /// SDKs' threshold, objects up to 64 MiB.
    pub fn new(bucket: impl Into<String>, namespace: &str) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: namespace_prefix(namespace),
            driver_name: S3_DRIVER.to_owned(),
            threshold: DEFAULT_THRESHOLD,
            max_object_bytes: 64 << 20,
        }
    }

    /// Where a reference at `index` may be followed: it must be this
    /// driver's, in this bucket, under this prefix.
    pub fn permit(&self, index: usize, reference: &Reference) -> Result<S3Location, StorageError> {
        let refused = |reason: String| StorageError::Refused { index, reason };
        if reference.driver_name != self.driver_name {
            return Err(refused(format!(
                "driver \"{}\" is not the configured \"{}\"",
                Quoted(&reference.driver_name),
                self.driver_name
            )));
        }
        let location = S3Location::from_reference(index, reference)?;
        if location.bucket != self.bucket {
            return Err(refused(format!(
                "bucket \"{}\" is not configured",
                Quoted(&location.bucket)
            )));
        }
        if !location.key.starts_with(&self.prefix) {
            return Err(refused(format!(
                "key \"{}\" is not under the configured prefix \"{}\"",
                Quoted(&location.key),
                self.prefix
            )));
        }
        Ok(location)
    }

    /// Where `object` is stored ([`locate`](Self::locate)) and the reference,
    /// in this configuration's driver name, that stands for it in a history.
    pub fn place(&self, object: &[u8]) -> (S3Location, Reference) {
        let location = self.locate(object);
        let reference = location.reference(&self.driver_name, object.len());
        (location, reference)
    }

    /// Where the serialized payload `object` is stored: its SHA-256 names it,
    /// so storing the same ciphertext twice (a retried task) writes one object.
    pub fn locate(&self, object: &[u8]) -> S3Location {
        let digest = ring::digest::digest(&ring::digest::SHA256, object);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        S3Location {
            bucket: self.bucket.clone(),
            key: format!("{}d/sha256/{}", self.prefix, hex(&sha256)),
            sha256,
        }
    }
}

/// `v0/ns/{namespace}/`, the namespace percent-encoded as the official S3
/// drivers encode path segments.
pub fn namespace_prefix(namespace: &str) -> String {
    let mut out = String::from("v0/ns/");
    if namespace.is_empty() {
        out.push_str("null");
    }
    for b in namespace.bytes() {
        if b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('/');
    out
}

/// Checks a fetched object against its location and reads the payload it
/// holds: its SHA-256 must be the reference's (a swapped or altered object is
/// refused before anything parses it).
pub fn open_object(
    index: usize,
    location: &S3Location,
    object: Bytes,
) -> Result<Payload, StorageError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, &object);
    open_hashed(index, location, object, digest.as_ref())
}

/// [`open_object`] for an object whose SHA-256 is `digest`, computed as it
/// arrived.
pub(crate) fn open_hashed(
    index: usize,
    location: &S3Location,
    object: Bytes,
    digest: &[u8],
) -> Result<Payload, StorageError> {
    let tampered = |reason| StorageError::Tampered {
        index,
        bucket: location.bucket.clone(),
        key: location.key.clone(),
        reason,
    };
    // Not secret: a plain comparison.
    if digest != location.sha256 {
        return Err(tampered("does not have the SHA-256 its reference names"));
    }
    Payload::decode(object).map_err(|_| tampered("is not a serialized payload"))
}

/// A payload serialized as the object that stores it.
pub fn object_bytes(payload: &Payload) -> Vec<u8> {
    payload.encode_to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(p: &Payload) -> Vec<(&str, &[u8])> {
        p.metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect()
    }

    fn parse(p: &Payload) -> Result<Reference, StorageError> {
        Reference::parse(3, pairs(p), &p.data, &p.external_payloads)
    }

    fn written(config: &StorageConfig) -> (Payload, S3Location) {
        let object = object_bytes(&Payload::new("binary/tcodec", vec![7u8; 64]));
        let (location, reference) = config.place(&object);
        (reference.to_payload(), location)
    }

    #[test]
    fn references_are_written_in_temporals_shape_and_read_back() {
        let config = StorageConfig::new("payloads", "payments");
        let (payload, location) = written(&config);
        assert!(is_reference(pairs(&payload)));
        assert_eq!(payload.encoding(), Some(REFERENCE_ENCODING.as_bytes()));
        assert_eq!(payload.external_payloads.len(), 1);
        let reference = parse(&payload).unwrap();
        assert_eq!(reference.driver_name, S3_DRIVER);
        assert_eq!(config.permit(3, &reference).unwrap(), location);
        assert!(location.key.starts_with("v0/ns/payments/d/sha256/"));
        // Another message type under the same encoding is an ordinary payload.
        let mut other = payload.clone();
        other.metadata.insert(
            MESSAGE_TYPE.into(),
            b"temporal.api.common.v1.Payloads".to_vec(),
        );
        assert!(!is_reference(pairs(&other)));
    }

    #[test]
    fn the_earlier_sdk_shape_is_read() {
        let data = br#"{"driver_name":"aws.s3driver","driver_claim":{"claim_data":{"bucket":"b","key":"k"}}}"#;
        let payload = Payload::new(LEGACY_REFERENCE_ENCODING, data.to_vec());
        assert!(is_reference(pairs(&payload)));
        let reference = parse(&payload).unwrap();
        assert_eq!(reference.claim["bucket"], "b");
        assert_eq!(reference.claim["key"], "k");
    }

    #[test]
    fn namespaces_are_percent_encoded_as_the_official_drivers_do() {
        assert_eq!(namespace_prefix("payments.a1b2"), "v0/ns/payments.a1b2/");
        assert_eq!(namespace_prefix("a b/é"), "v0/ns/a%20b%2F%C3%A9/");
        assert_eq!(namespace_prefix(""), "v0/ns/null/");
    }

    #[test]
    fn claims_of_any_other_shape_are_refused_naming_the_payload() {
        let config = StorageConfig::new("payloads", "payments");
        let (payload, _) = written(&config);
        let reference = parse(&payload).unwrap();
        let with = |k: &str, v: &str| {
            let mut r = reference.clone();
            r.claim.insert(k.into(), v.into());
            r
        };
        let cases = [
            (with("endpoint", "http://169.254.169.254"), "malformed"),
            (with("hash_algorithm", "md5"), "malformed"),
            (with("hash_value", &"A".repeat(64)), "malformed"),
            (with("key", "v0/ns/payments/a\nb"), "malformed"),
            (with("bucket", "other"), "refused"),
            (with("key", "v0/ns/billing/x"), "refused"),
        ];
        for (r, class) in cases {
            let e = config.permit(3, &r).unwrap_err();
            assert_eq!(e.index(), 3);
            match (class, &e) {
                ("malformed", StorageError::Malformed { .. })
                | ("refused", StorageError::Refused { .. }) => {}
                _ => panic!("{class}: {e}"),
            }
        }
        let mut other_driver = reference.clone();
        other_driver.driver_name = "gcs".into();
        assert!(matches!(
            config.permit(3, &other_driver),
            Err(StorageError::Refused { .. })
        ));
        // Control characters are refused outright; quotes are shown escaped.
        let e = config.permit(3, &with("bucket", "x\ny")).unwrap_err();
        assert!(matches!(e, StorageError::Malformed { .. }), "{e}");
        let e = config.permit(3, &with("bucket", "x\"y")).unwrap_err();
        assert!(e.to_string().contains("bucket \"x\\\"y\""), "{e}");
    }

    #[test]
    fn an_object_must_have_the_hash_its_reference_names() {
        let config = StorageConfig::new("payloads", "payments");
        let original = Payload::new("binary/tcodec", vec![7u8; 64]);
        let object = object_bytes(&original);
        let location = config.locate(&object);
        assert_eq!(
            open_object(0, &location, Bytes::from(object.clone())).unwrap(),
            original
        );
        let mut altered = object;
        altered[10] ^= 1;
        assert!(matches!(
            open_object(0, &location, Bytes::from(altered)),
            Err(StorageError::Tampered { .. })
        ));
    }
}
