//! The keyring document: the file that lists key versions, their states and
//! their wrapped data keys. It holds no plaintext key material, so it is not
//! secret; it must still be protected against writes by the untrusted.
//!
//! ```json
//! {
//!   "format": "tcodec-keyring",
//!   "version": 1,
//!   "name": "payments-prod",
//!   "revision": 4,
//!   "keys": [
//!     { "id": "k1", "created": "2026-11-24T10:00:00Z", "state": "retired",
//!       "kek": { "provider": "aws-kms", "key": "arn:aws:kms:…:key/…" },
//!       "wrapped_dek": "AQIDAHh…" },
//!     { "id": "k2", "created": "2026-11-25T10:00:00Z", "state": "primary", … }
//!   ],
//!   "legacy_keys": [
//!     { "id": "test-key-id", "created": "2026-12-03T10:00:00Z", "state": "decrypt-only",
//!       "kek": { … }, "wrapped_key": "…" }
//!   ]
//! }
//! ```
//!
//! `legacy_keys` (absent when empty) holds the keys of the official samples'
//! `binary/encrypted` codec, imported so that payloads written before a move
//! to tcodec stay readable; `id` is their `encryption-key-id`, and the key is
//! wrapped by the KEK like a data key, under the context
//! `{tcodec:keyring, tcodec:legacy-key-id}`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{KeyId, KeyState, Transition};

/// The `format` value of a keyring document.
pub const FORMAT: &str = "tcodec-keyring";
/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Which key-encryption key (KEK) wrapped a data key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekRef {
    /// The provider: `local` or `aws-kms`.
    pub provider: String,
    /// The provider's name for the key: the local master key's fingerprint, or
    /// a KMS key id or ARN.
    pub key: String,
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key)
    }
}

/// One key version as the document records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVersion {
    /// The key id written into every payload it seals.
    pub id: KeyId,
    /// When the version was created, RFC 3339 UTC.
    pub created: String,
    /// Its lifecycle state.
    pub state: KeyState,
    /// The KEK that wrapped its data key.
    pub kek: KekRef,
    /// The wrapped data key, base64. Absent once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_dek: Option<String>,
}

/// A legacy key as the document records it: a key of the samples'
/// `binary/encrypted` format, wrapped by a KEK, decrypt-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyKeyVersion {
    /// The `encryption-key-id` the payloads carry (see [`check_legacy_id`]).
    pub id: String,
    /// When it was imported, RFC 3339 UTC.
    pub created: String,
    /// `decrypt-only`, `disabled` or `destroyed`.
    pub state: KeyState,
    /// The KEK that wrapped it.
    pub kek: KekRef,
    /// The wrapped key, base64. Absent once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

/// The longest legacy key id, in bytes.
pub const LEGACY_ID_MAX_LEN: usize = 255;

/// Checks a legacy key id: the samples let their users choose any text, so
/// any is taken except empty, longer than [`LEGACY_ID_MAX_LEN`] bytes, or
/// holding control characters (which logs and the context encoding cannot
/// carry).
pub fn check_legacy_id(id: &str) -> Result<(), DocumentError> {
    if id.is_empty() || id.len() > LEGACY_ID_MAX_LEN || id.chars().any(char::is_control) {
        return Err(DocumentError::LegacyId(id.escape_debug().to_string()));
    }
    Ok(())
}

/// A keyring document, validated: one primary at most (exactly one unless the
/// keyring is empty), unique ids, wrapped keys present exactly when not destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyringDocument {
    format: String,
    version: u32,
    name: String,
    revision: u64,
    keys: Vec<KeyVersion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    legacy_keys: Vec<LegacyKeyVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    format: String,
    version: u32,
    name: String,
    revision: u64,
    keys: Vec<KeyVersion>,
    #[serde(default)]
    legacy_keys: Vec<LegacyKeyVersion>,
}

/// Why a keyring document is not valid, or an operation on it is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not JSON, or not the document's shape. The message says where.
    #[error("keyring is not a valid keyring document: {0}")]
    Syntax(String),
    /// The `format` field names something else.
    #[error("not a tcodec keyring (format is {0:?})")]
    Format(String),
    /// The schema version is one this build does not read.
    #[error(
        "keyring schema version {0} is not supported (this build reads version {SCHEMA_VERSION})"
    )]
    Version(u32),
    /// The keyring name is empty or has unsupported characters.
    #[error("keyring name {0:?} is invalid: use 1 to 64 ASCII letters, digits, '.', '_' or '-'")]
    Name(String),
    /// Two versions share an id.
    #[error("keyring lists key {0} twice")]
    DuplicateId(KeyId),
    /// More than one primary, or none while live keys exist.
    #[error("keyring must have exactly one primary key, it has {0}")]
    PrimaryCount(usize),
    /// A destroyed key still carries a wrapped key, or a live one lacks it.
    #[error("key {0}: a wrapped data key must be present exactly when the key is not destroyed")]
    WrappedKey(String),
    /// A legacy key id is empty, too long or holds control characters.
    #[error(
        "legacy key id \"{0}\" is invalid: use 1 to 255 bytes of text without control characters"
    )]
    LegacyId(String),
    /// A legacy key id is used twice, or is also a tcodec key's id.
    #[error("keyring already has a key called {0:?}")]
    DuplicateLegacyId(String),
    /// A key is in a state its kind cannot have: a legacy key pending,
    /// primary or retired, or a tcodec key decrypt-only.
    #[error("key {id} cannot be {state}: {why}")]
    State {
        /// The key.
        id: String,
        /// The state it claims.
        state: KeyState,
        /// Which states its kind has.
        why: &'static str,
    },
    /// The named key is not in the keyring.
    #[error("key {0} is not in the keyring")]
    UnknownKey(String),
    /// A lifecycle change the state machine forbids.
    #[error("key {id} is {state}: {why}")]
    Transition {
        /// The key.
        id: String,
        /// Its current state.
        state: KeyState,
        /// What to do instead.
        why: &'static str,
    },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KeyringDocument {
    /// An empty keyring called `name`.
    pub fn new(name: &str) -> Result<Self, DocumentError> {
        if !valid_name(name) {
            return Err(DocumentError::Name(name.to_owned()));
        }
        Ok(Self {
            format: FORMAT.to_owned(),
            version: SCHEMA_VERSION,
            name: name.to_owned(),
            revision: 0,
            keys: Vec::new(),
            legacy_keys: Vec::new(),
        })
    }

    /// Parses and validates a document.
    pub fn from_json(text: &[u8]) -> Result<Self, DocumentError> {
        let raw: RawDocument =
            serde_json::from_slice(text).map_err(|e| DocumentError::Syntax(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(DocumentError::Format(raw.format));
        }
        if raw.version != SCHEMA_VERSION {
            return Err(DocumentError::Version(raw.version));
        }
        let doc = Self {
            format: raw.format,
            version: raw.version,
            name: raw.name,
            revision: raw.revision,
            keys: raw.keys,
            legacy_keys: raw.legacy_keys,
        };
        doc.validate()?;
        Ok(doc)
    }

    /// The document as pretty JSON, ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn validate(&self) -> Result<(), DocumentError> {
        if !valid_name(&self.name) {
            return Err(DocumentError::Name(self.name.clone()));
        }
        let mut seen = BTreeSet::new();
        for k in &self.keys {
            if !seen.insert(&k.id) {
                return Err(DocumentError::DuplicateId(k.id.clone()));
            }
            if (k.state == KeyState::Destroyed) == k.wrapped_dek.is_some() {
                return Err(DocumentError::WrappedKey(k.id.to_string()));
            }
            if k.state == KeyState::DecryptOnly {
                return Err(DocumentError::State {
                    id: k.id.to_string(),
                    state: k.state,
                    why: "only legacy keys are decrypt-only",
                });
            }
        }
        let mut legacy_seen = BTreeSet::new();
        for k in &self.legacy_keys {
            check_legacy_id(&k.id)?;
            if !legacy_seen.insert(k.id.as_str()) || self.key(&k.id).is_some() {
                return Err(DocumentError::DuplicateLegacyId(k.id.clone()));
            }
            if !matches!(
                k.state,
                KeyState::DecryptOnly | KeyState::Disabled | KeyState::Destroyed
            ) {
                return Err(DocumentError::State {
                    id: k.id.clone(),
                    state: k.state,
                    why: "a legacy key is decrypt-only, disabled or destroyed",
                });
            }
            if (k.state == KeyState::Destroyed) == k.wrapped_key.is_some() {
                return Err(DocumentError::WrappedKey(k.id.clone()));
            }
        }
        let primaries = self
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Primary)
            .count();
        let live = self.keys.iter().any(|k| k.state != KeyState::Destroyed);
        if primaries > 1 || (live && primaries == 0) {
            return Err(DocumentError::PrimaryCount(primaries));
        }
        Ok(())
    }

    /// The keyring's name, bound into every wrapped key's encryption context.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times the document has been written; each write adds one.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The key versions, oldest first.
    pub fn keys(&self) -> &[KeyVersion] {
        &self.keys
    }

    /// The legacy keys, oldest first.
    pub fn legacy_keys(&self) -> &[LegacyKeyVersion] {
        &self.legacy_keys
    }

    /// The legacy key whose `encryption-key-id` is `id`.
    pub fn legacy(&self, id: &str) -> Option<&LegacyKeyVersion> {
        self.legacy_keys.iter().find(|k| k.id == id)
    }

    /// Whether any data key or legacy key is wrapped by KEK provider `name`.
    pub fn uses_provider(&self, name: &str) -> bool {
        self.keys().iter().any(|k| k.kek.provider == name)
            || self.legacy_keys.iter().any(|k| k.kek.provider == name)
    }

    /// The version called `id`.
    pub fn key(&self, id: &str) -> Option<&KeyVersion> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    /// The primary version, if any.
    pub fn primary(&self) -> Option<&KeyVersion> {
        self.keys.iter().find(|k| k.state == KeyState::Primary)
    }

    /// The id the next added key gets: `k<n>`, one past the highest such number.
    pub fn next_id(&self) -> KeyId {
        let highest = self
            .keys
            .iter()
            .map(|k| k.id.as_str())
            .chain(self.legacy_keys.iter().map(|k| k.id.as_str()))
            .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        // "k" and a number always make a valid id.
        KeyId::new(format!("k{}", highest + 1)).unwrap_or_else(|_| unreachable!())
    }

    /// Marks the document as changed: one more revision.
    pub fn bump_revision(&mut self) {
        self.revision += 1;
    }

    /// Adds a pending version; the first version of an empty keyring becomes
    /// primary straight away.
    pub fn add(
        &mut self,
        id: KeyId,
        created: String,
        kek: KekRef,
        wrapped_dek: String,
    ) -> &KeyVersion {
        let state = if self.primary().is_none() {
            KeyState::Primary
        } else {
            KeyState::Pending
        };
        self.keys.push(KeyVersion {
            id,
            created,
            state,
            kek,
            wrapped_dek: Some(wrapped_dek),
        });
        &self.keys[self.keys.len() - 1]
    }

    /// Adds a legacy key, decrypt-only. Its id must be new to the keyring.
    pub fn add_legacy(
        &mut self,
        id: &str,
        created: String,
        kek: KekRef,
        wrapped_key: String,
    ) -> Result<&LegacyKeyVersion, DocumentError> {
        check_legacy_id(id)?;
        if self.legacy(id).is_some() || self.key(id).is_some() {
            return Err(DocumentError::DuplicateLegacyId(id.to_owned()));
        }
        self.legacy_keys.push(LegacyKeyVersion {
            id: id.to_owned(),
            created,
            state: KeyState::DecryptOnly,
            kek,
            wrapped_key: Some(wrapped_key),
        });
        Ok(&self.legacy_keys[self.legacy_keys.len() - 1])
    }

    /// Replaces the wrapping of legacy key `id` (after a rewrap).
    pub fn set_legacy_wrapping(
        &mut self,
        id: &str,
        kek: KekRef,
        wrapped_key: String,
    ) -> Result<(), DocumentError> {
        let k = self
            .legacy_keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| DocumentError::UnknownKey(id.to_owned()))?;
        if k.state == KeyState::Destroyed {
            return Err(DocumentError::Transition {
                id: id.to_owned(),
                state: k.state,
                why: "it is gone for good",
            });
        }
        k.kek = kek;
        k.wrapped_key = Some(wrapped_key);
        Ok(())
    }

    /// The state of key `id`, tcodec or legacy.
    pub fn state_of(&self, id: &str) -> Option<KeyState> {
        self.key(id)
            .map(|k| k.state)
            .or_else(|| self.legacy(id).map(|k| k.state))
    }

    /// Applies `transition` to legacy key `i`: the lifecycle's rules, with
    /// `decrypt-only` where a data key would be retired.
    fn transition_legacy(&mut self, i: usize, transition: Transition) -> Result<(), DocumentError> {
        let k = &mut self.legacy_keys[i];
        let to = match k.state.after(transition) {
            Ok(KeyState::Retired) => KeyState::DecryptOnly,
            Ok(to) => to,
            Err(why) => {
                return Err(DocumentError::Transition {
                    id: k.id.clone(),
                    state: k.state,
                    why,
                });
            }
        };
        if to == KeyState::Destroyed {
            k.wrapped_key = None;
        }
        k.state = to;
        Ok(())
    }

    fn index(&self, id: &str) -> Result<usize, DocumentError> {
        self.keys
            .iter()
            .position(|k| k.id.as_str() == id)
            .ok_or_else(|| DocumentError::UnknownKey(id.to_owned()))
    }

    fn refuse(&self, i: usize, why: &'static str) -> DocumentError {
        DocumentError::Transition {
            id: self.keys[i].id.to_string(),
            state: self.keys[i].state,
            why,
        }
    }

    /// Applies `transition` to `id` by the rules of [`KeyState::after`]:
    /// promoting retires the old primary, destroying erases the wrapped data
    /// key.
    /// Legacy keys follow the same rules, with `decrypt-only` in place of
    /// retired.
    pub fn transition(&mut self, id: &str, transition: Transition) -> Result<(), DocumentError> {
        if self.key(id).is_none()
            && let Some(i) = self.legacy_keys.iter().position(|k| k.id == id)
        {
            return self.transition_legacy(i, transition);
        }
        let i = self.index(id)?;
        let from = self.keys[i].state;
        let to = from.after(transition).map_err(|why| self.refuse(i, why))?;
        if to == from {
            return Ok(());
        }
        if to == KeyState::Primary {
            for k in &mut self.keys {
                if k.state == KeyState::Primary {
                    k.state = KeyState::Retired;
                }
            }
        }
        if to == KeyState::Destroyed {
            self.keys[i].wrapped_dek = None;
        }
        self.keys[i].state = to;
        Ok(())
    }

    /// Makes `id` the primary; the old primary is retired.
    pub fn promote(&mut self, id: &str) -> Result<(), DocumentError> {
        self.transition(id, Transition::Promote)
    }

    /// Replaces the wrapping of `id` (after a rewrap under a new KEK).
    pub fn set_wrapping(
        &mut self,
        id: &str,
        kek: KekRef,
        wrapped_dek: String,
    ) -> Result<(), DocumentError> {
        let i = self.index(id)?;
        if self.keys[i].state == KeyState::Destroyed {
            return Err(self.refuse(i, "it is gone for good"));
        }
        self.keys[i].kek = kek;
        self.keys[i].wrapped_dek = Some(wrapped_dek);
        Ok(())
    }
}
