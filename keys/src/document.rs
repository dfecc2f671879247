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
//!   ]
//! }
//! ```

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

/// A keyring document, validated: one primary at most (exactly one unless the
/// keyring is empty), unique ids, wrapped keys present exactly when not destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyringDocument {
    format: String,
    version: u32,
    name: String,
    revision: u64,
    keys: Vec<KeyVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    format: String,
    version: u32,
    name: String,
    revision: u64,
    keys: Vec<KeyVersion>,
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
    WrappedKey(KeyId),
    /// The named key is not in the keyring.
    #[error("key {0} is not in the keyring")]
    UnknownKey(String),
    /// A lifecycle change the state machine forbids.
    #[error("key {id} is {state}: {why}")]
    Transition {
        /// The key.
        id: KeyId,
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

    /// Whether any key version's data key is wrapped by KEK provider `name`.
    pub fn uses_provider(&self, name: &str) -> bool {
        self.keys().iter().any(|k| k.kek.provider == name)
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
            .filter_map(|k| k.id.as_str().strip_prefix('k')?.parse::<u64>().ok())
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

    fn index(&self, id: &str) -> Result<usize, DocumentError> {
        self.keys
            .iter()
            .position(|k| k.id.as_str() == id)
            .ok_or_else(|| DocumentError::UnknownKey(id.to_owned()))
    }

    fn refuse(&self, i: usize, why: &'static str) -> DocumentError {
        DocumentError::Transition {
            id: self.keys[i].id.clone(),
            state: self.keys[i].state,
            why,
        }
    }

    /// Applies `transition` to `id` by the rules of [`KeyState::after`]:
    /// promoting retires the old primary, destroying erases the wrapped data
    /// key.
    pub fn transition(&mut self, id: &str, transition: Transition) -> Result<(), DocumentError> {
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
