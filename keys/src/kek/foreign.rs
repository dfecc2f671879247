//! KEKs other tools name by URI: temporal-proxy writes the URI of the KEK that
//! wrapped a payload's data key into the payload (`encryption-key-id`), in the
//! Go CDK's `secrets` URL form. tcodec reads the AWS KMS form:
//!
//! - `awskms:///<key ARN>?region=<region>` (an ARN after three slashes),
//! - `awskms://<key id>?region=…`, `awskms://alias/<name>?region=…`,
//! - with `context_<name>=<value>` query parameters for an encryption context.
//!
//! The KMS key is checked against the deployment's allow-list like any other
//! (`kms_keys`); the region comes from the deployment's KMS settings, not the
//! URI, so a payload cannot send tcodec's requests elsewhere.

use std::collections::BTreeMap;

use super::{AWS_KMS, EncryptionContext, KekError};
use crate::document::KekRef;

/// A KEK named by a foreign URI: the KMS key, and the encryption context its
/// wrappings were made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKek {
    /// The provider and key, as a keyring would name them.
    pub kek: KekRef,
    /// The context to unwrap with (often none).
    pub context: EncryptionContext,
}

impl ForeignKek {
    /// Parses `uri`; anything but an `awskms://` URI naming a key is refused.
    pub fn parse(uri: &str) -> Result<Self, KekError> {
        let refuse = |reason: &'static str| KekError::ForeignUri {
            uri: uri.escape_debug().to_string(),
            reason,
        };
        let rest = uri.strip_prefix("awskms://").ok_or_else(|| {
            refuse("tcodec reads temporal-proxy payloads whose KEK is AWS KMS (awskms://) only")
        })?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let key = location.strip_prefix('/').unwrap_or(location);
        if key.is_empty() || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(refuse("it names no KMS key"));
        }
        let mut pairs = BTreeMap::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let name = percent_decode(name).ok_or_else(|| refuse("bad %-escape"))?;
            let value = percent_decode(value).ok_or_else(|| refuse("bad %-escape"))?;
            if let Some(context_key) = name.strip_prefix("context_") {
                pairs.insert(context_key.to_owned(), value);
            }
        }
        Ok(Self {
            kek: KekRef {
                provider: AWS_KMS.to_owned(),
                key: key.to_owned(),
            },
            context: EncryptionContext::foreign(uri, pairs),
        })
    }
}

/// `%XX`-decodes `text` (and `+` as a space, as query strings write it).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str) -> String {
        ForeignKek::parse(uri).unwrap().kek.key
    }

    #[test]
    fn reads_the_awskms_forms() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(key(&format!("awskms:///{arn}?region=us-east-1")), arn);
        assert_eq!(key("awskms://1234abcd?region=eu-west-1"), "1234abcd");
        assert_eq!(key("awskms://alias/Payments"), "alias/Payments");
        let parsed =
            ForeignKek::parse("awskms://k?context_team=pay%20ments&context_env=prod").unwrap();
        assert_eq!(parsed.kek.provider, "aws-kms");
        assert_eq!(
            parsed.context.pairs(),
            BTreeMap::from([
                ("env".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "pay ments".to_owned())
            ])
        );
        assert_eq!(
            parsed.context.key_id(),
            "awskms://k?context_team=pay%20ments&context_env=prod"
        );
    }

    #[test]
    fn refuses_other_kinds_and_bad_uris() {
        for uri in [
            "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
            "base64key://c2VjcmV0",
            "hashivault://mykey",
            "awskms://",
            "awskms:///?region=us-east-1",
            "awskms://k?context_a=%zz",
            "",
        ] {
            let err = ForeignKek::parse(uri).unwrap_err();
            assert!(matches!(err, KekError::ForeignUri { .. }), "{uri}: {err}");
        }
    }
}
