//! The interface between key storage and the codec.

use std::fmt;
use std::sync::Arc;

use crate::{DataKey, KeyError, KeyId, LegacyKey, SecretBytes32};

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
///
/// Legacy keys (imported with `tcodec keys import-legacy`, for payloads the
/// samples' codec wrote) start `decrypt-only` and can only be disabled,
/// enabled again (back to `decrypt-only`) and destroyed: tcodec never writes
/// their format.
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
    /// A legacy key: decrypts the format it was imported for, never encrypts.
    #[serde(rename = "decrypt-only")]
    DecryptOnly,
}

/// A lifecycle change of one key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// Make the key primary (the old primary is retired).
    Promote,
    /// Stop a pending key from becoming primary; it still decrypts.
    Retire,
    /// Refuse to decrypt with the key, reversibly.
    Disable,
    /// Undo a disable (the key comes back retired).
    Enable,
    /// Erase a disabled key's wrapped data key for good.
    Destroy,
}

impl KeyState {
    /// The key lifecycle, the one rule set every keyring follows: the state
    /// `transition` leads to from this one, or why it is refused. A transition
    /// to the state a key is already in is allowed and changes nothing.
    /// Promoting a key also retires the old primary; the keyring does that.
    pub fn after(self, transition: Transition) -> Result<KeyState, &'static str> {
        use KeyState::*;
        match (transition, self) {
            (Transition::Promote, Pending | Retired | Primary) => Ok(Primary),
            (Transition::Promote, Disabled) => Err("enable it before promoting it"),
            (Transition::Promote, Destroyed) => Err("a destroyed key cannot encrypt"),
            (Transition::Promote, DecryptOnly) => {
                Err("a legacy key only decrypts: tcodec never writes its format")
            }
            (Transition::Retire, DecryptOnly) => {
                Err("a legacy key never encrypts, so it has nothing to retire from")
            }
            (Transition::Retire, Pending | Retired) => Ok(Retired),
            (Transition::Retire, Primary) => Err("promote another key first"),
            (Transition::Retire, Disabled) => Err("use enable to make it decrypt again"),
            (Transition::Disable, Pending | Retired | Disabled | DecryptOnly) => Ok(Disabled),
            (Transition::Disable, Primary) => Err("promote another key before disabling this one"),
            (Transition::Enable, Disabled) => Ok(Retired),
            (Transition::Enable, Destroyed) => Err("a destroyed key cannot be enabled"),
            (Transition::Enable, _) => Err("only a disabled key can be enabled"),
            (Transition::Destroy, Disabled | Destroyed) => Ok(Destroyed),
            (Transition::Destroy, _) => {
                Err("disable it first, and check that nothing still needs it")
            }
            (Transition::Retire | Transition::Disable, Destroyed) => Err("it is gone for good"),
        }
    }

    /// Whether payloads under a key in this state may be decrypted.
    pub fn can_decrypt(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Primary | Self::Retired | Self::DecryptOnly
        )
    }

    /// The state's lowercase name, as used in keyring files and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Primary => "primary",
            Self::Retired => "retired",
            Self::Disabled => "disabled",
            Self::Destroyed => "destroyed",
            Self::DecryptOnly => "decrypt-only",
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

    /// The data key of a temporal-proxy payload: `wrapped` (base64, as the
    /// payload's `encryption-dek` carries it), wrapped by the KEK that
    /// `kek_uri` names (its `encryption-key-id`). Only KEKs the deployment
    /// allows are asked (see [`crate::kek::ForeignKek`]).
    ///
    /// The default has none.
    fn proxy_key(&self, kek_uri: &str, wrapped: &str) -> Result<Arc<SecretBytes32>, KeyError> {
        let _ = wrapped;
        Err(KeyError::Unknown(kek_uri.to_owned()))
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

    fn proxy_key(&self, kek_uri: &str, wrapped: &str) -> Result<Arc<SecretBytes32>, KeyError> {
        (**self).proxy_key(kek_uri, wrapped)
    }
}
