//! Key material: fixed-size secrets that zeroize on drop and never print.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::KeyId;

/// 32 secret bytes (an AES-256 key) that are wiped from memory on drop.
///
/// `Debug` prints only `SecretBytes32(..)`; there is no `Display`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes32([u8; 32]);

impl SecretBytes32 {
    /// Takes ownership of 32 key bytes. The caller's copy should itself be
    /// zeroized (for example by holding it in [`zeroize::Zeroizing`]).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Copies a key out of a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.try_into().ok()?);
        Some(Self(*array))
    }

    /// The key bytes. Only cryptographic code should call this.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes32(..)")
    }
}

/// One version of a data-encryption key (DEK): its id and its 256-bit secret.
///
/// `Debug` shows the id only.
#[derive(Clone)]
pub struct DataKey {
    id: KeyId,
    secret: SecretBytes32,
}

impl DataKey {
    /// A data key with the given id and secret.
    pub fn new(id: KeyId, secret: SecretBytes32) -> Self {
        Self { id, secret }
    }

    /// The key version's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key's secret bytes. Only cryptographic code should call this.
    pub fn secret(&self) -> &SecretBytes32 {
        &self.secret
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A key of the official Temporal samples' `binary/encrypted` format, kept so
/// that payloads written before a migration to tcodec can still be decoded.
///
/// Legacy ids are free-form strings chosen by whoever wrote those payloads.
/// `Debug` shows the id only.
#[derive(Clone)]
pub struct LegacyKey {
    id: String,
    secret: SecretBytes32,
}

impl LegacyKey {
    /// A legacy key with the given id (the `encryption-key-id` metadata value).
    pub fn new(id: impl Into<String>, secret: SecretBytes32) -> Self {
        Self {
            id: id.into(),
            secret,
        }
    }

    /// The `encryption-key-id` this key answers to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key's secret bytes. Only cryptographic code should call this.
    pub fn secret(&self) -> &SecretBytes32 {
        &self.secret
    }
}

impl fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let secret = SecretBytes32::new([0xAB; 32]);
        let dek = DataKey::new(KeyId::new("k1").unwrap(), secret.clone());
        let legacy = LegacyKey::new("old-key", secret.clone());
        for text in [
            format!("{secret:?}"),
            format!("{dek:?}"),
            format!("{legacy:?}"),
            format!("{dek:#?}"),
        ] {
            assert!(!text.contains("171"), "decimal key byte leaked: {text}");
            assert!(
                !text.to_lowercase().contains("ab, "),
                "key bytes leaked: {text}"
            );
            assert!(
                !text.to_lowercase().contains("abab"),
                "hex key leaked: {text}"
            );
        }
        assert_eq!(format!("{dek:?}"), r#"DataKey { id: KeyId("k1"), .. }"#);
    }

    #[test]
    fn zeroize_wipes_the_bytes() {
        let mut secret = SecretBytes32::new([0x5A; 32]);
        secret.zeroize();
        assert_eq!(secret.expose_secret(), &[0u8; 32]);
    }

    #[test]
    fn from_slice_requires_exactly_32_bytes() {
        assert!(SecretBytes32::from_slice(&[1; 31]).is_none());
        assert!(SecretBytes32::from_slice(&[1; 33]).is_none());
        assert_eq!(
            SecretBytes32::from_slice(&[7; 32]).map(|s| *s.expose_secret()),
            Some([7; 32])
        );
    }
}
