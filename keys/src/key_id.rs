//! Key version identifiers.

use std::fmt;
use std::str::FromStr;

/// The identifier of one key version, e.g. `k1` or `2026-11-24.1`.
///
/// Key ids are written into every payload header and the payload metadata, so they
/// are deliberately restricted: 1 to [`KeyId::MAX_LEN`] bytes of ASCII letters,
/// digits, `.`, `_` and `-`. A key id is not secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// The longest key id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses and validates a key id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidKeyId> {
        let id = id.into();
        Self::check(&id)?;
        Ok(Self(id))
    }

    /// Checks that `id` is a valid key id without making one.
    pub fn check(id: &str) -> Result<(), InvalidKeyId> {
        if id.is_empty() || id.len() > Self::MAX_LEN {
            return Err(InvalidKeyId::Length(id.len()));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidKeyId::Character(bad));
        }
        Ok(())
    }

    /// The key id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key id as the bytes written into payload headers.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidKeyId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

impl FromStr for KeyId {
    type Err = InvalidKeyId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&[u8]> for KeyId {
    type Error = InvalidKeyId;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| InvalidKeyId::NotUtf8)?;
        Self::new(text)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.0)
    }
}

/// Why a string is not a valid [`KeyId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKeyId {
    /// Empty, or longer than [`KeyId::MAX_LEN`] bytes.
    #[error("a key id must be 1 to {max} bytes long, not {0}", max = KeyId::MAX_LEN)]
    Length(usize),
    /// Holds a character outside `[A-Za-z0-9._-]`.
    #[error("a key id may hold only ASCII letters, digits, '.', '_' and '-', not {0:?}")]
    Character(char),
    /// The bytes are not UTF-8.
    #[error("a key id must be ASCII text")]
    NotUtf8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["k1", "2026-11-24.1", "prod_payments-v12", &"a".repeat(64)] {
            assert_eq!(KeyId::new(id).map(|k| k.to_string()), Ok(id.to_string()));
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(KeyId::new(""), Err(InvalidKeyId::Length(0)));
        assert_eq!(KeyId::new("a".repeat(65)), Err(InvalidKeyId::Length(65)));
        assert_eq!(KeyId::new("k 1"), Err(InvalidKeyId::Character(' ')));
        assert_eq!(KeyId::new("k/1"), Err(InvalidKeyId::Character('/')));
        assert_eq!(KeyId::new("kä"), Err(InvalidKeyId::Character('ä')));
        assert_eq!(
            KeyId::try_from(&[0xff, 0x31][..]),
            Err(InvalidKeyId::NotUtf8)
        );
    }
}
