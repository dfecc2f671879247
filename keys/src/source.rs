//! The interface between key storage and the codec.

use std::fmt;
use std::sync::Arc;

use crate::{DataKey, KeyError, KeyId, LegacyKey};

/// The lifecycle state of a key version.
///
/// ```text
/// pending ──promote──▶ primary ──(next promote)──▶ retired ──disable──▶ disabled ──destroy──▶ destroyed
///    ▲                                                 ▲                    │
///    └── new versions start here                       └──────enable────────┘
/// ```
///
/// Only the primary encrypts. Pending, primary and retired keys decrypt.
/// Disabled keys are refused (reversibly); destroyed keys are gone for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyState {
    /// Added and distributed to readers, not yet used to encrypt.
    Pending,
    /// The one key version that encrypts new payloads.
    Primary,
    /// No longer encrypts; still decrypts old payloads.
    Retired,
    /// Refuses to decrypt until enabled again.
    Disabled,
    /// Key material erased: payloads under it are unrecoverable.
    Destroyed,
}

impl KeyState {
    /// Whether payloads under a key in this state may be decrypted.
    pub fn can_decrypt(self) -> bool {
        matches!(self, Self::Pending | Self::Primary | Self::Retired)
    }

    /// The state's lowercase name, as used in keyring files and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Primary => "primary",
            Self::Retired => "retired",
            Self::Disabled => "disabled",
            Self::Destroyed => "destroyed",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where the codec gets its keys.
///
/// Implementations must be cheap to call per batch of payloads: unwrap each key
/// version once and hand out the cached [`Arc`] afterwards.
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The primary key version, which encrypts new payloads.
    fn primary(&self) -> Result<Arc<DataKey>, KeyError>;

    /// The key version `id`, if it may decrypt.
    ///
    /// Returns [`KeyError::Disabled`] or [`KeyError::Destroyed`] for key versions
    /// in those states, and [`KeyError::Unknown`] for ids the keyring lacks.
    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError>;

    /// A key of the official samples' legacy format, by its `encryption-key-id`.
    ///
    /// The default has none.
    fn legacy_key(&self, id: &str) -> Result<Arc<LegacyKey>, KeyError> {
        Err(KeyError::Unknown(id.to_owned()))
    }
}

impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn primary(&self) -> Result<Arc<DataKey>, KeyError> {
        (**self).primary()
    }

    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError> {
        (**self).key(id)
    }

    fn legacy_key(&self, id: &str) -> Result<Arc<LegacyKey>, KeyError> {
        (**self).legacy_key(id)
    }
}
