//! A keyring held in memory, for tests, examples and embedded use.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{DataKey, KeyError, KeyId, KeySource, KeyState, LegacyKey, SecretBytes32, Transition};

/// A fixed keyring held in memory.
///
/// The simplest [`KeySource`]: key versions with their states, one of them
/// primary, plus any legacy keys. It never reloads; the file-backed keyring
/// does that.
///
/// ```
/// use tcodec_keys::{KeyId, KeySource, MemoryKeyring, SecretBytes32};
///
/// let id = KeyId::new("k1")?;
/// let keyring = MemoryKeyring::with_primary(id.clone(), SecretBytes32::new([7; 32]));
/// assert_eq!(keyring.primary()?.id(), &id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryKeyring {
    versions: BTreeMap<KeyId, (KeyState, Arc<DataKey>)>,
    legacy: BTreeMap<String, Arc<LegacyKey>>,
}

impl MemoryKeyring {
    /// An empty keyring: nothing encodes, nothing decodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring whose only key version is the primary `id`.
    pub fn with_primary(id: KeyId, secret: SecretBytes32) -> Self {
        let mut keyring = Self::new();
        keyring.insert(id, secret, KeyState::Primary);
        keyring
    }

    /// Adds a key version in the given state, for setting a keyring up
    /// (changes to a version already there go through
    /// [`transition`](Self::transition)). Inserting a primary retires the
    /// previous primary, so there is never more than one.
    pub fn insert(&mut self, id: KeyId, secret: SecretBytes32, state: KeyState) -> &mut Self {
        if state == KeyState::Primary {
            for (other_state, _) in self.versions.values_mut() {
                if *other_state == KeyState::Primary {
                    *other_state = KeyState::Retired;
                }
            }
        }
        let key = Arc::new(DataKey::new(id.clone(), secret));
        self.versions.insert(id, (state, key));
        self
    }

    /// Applies a lifecycle change to an existing key version, by the same
    /// rules as a keyring file ([`KeyState::after`]): promoting retires the
    /// previous primary, and nothing comes back from destroyed. Returns the
    /// key's new state.
    pub fn transition(&mut self, id: &KeyId, transition: Transition) -> Result<KeyState, KeyError> {
        let (from, _) = self
            .versions
            .get(id)
            .ok_or_else(|| KeyError::Unknown(id.to_string()))?;
        let to = from.after(transition).map_err(|why| KeyError::Refused {
            key_id: id.to_string(),
            state: *from,
            why,
        })?;
        if to == KeyState::Primary {
            for (other, _) in self.versions.values_mut() {
                if *other == KeyState::Primary {
                    *other = KeyState::Retired;
                }
            }
        }
        if let Some((state, _)) = self.versions.get_mut(id) {
            *state = to;
        }
        Ok(to)
    }

    /// Adds a key of the official samples' `binary/encrypted` format.
    pub fn insert_legacy(&mut self, key: LegacyKey) -> &mut Self {
        self.legacy.insert(key.id().to_owned(), Arc::new(key));
        self
    }
}

impl KeySource for MemoryKeyring {
    fn primary(&self) -> Result<Arc<DataKey>, KeyError> {
        self.versions
            .values()
            .find(|(state, _)| *state == KeyState::Primary)
            .map(|(_, key)| Arc::clone(key))
            .ok_or(KeyError::NoPrimary)
    }

    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError> {
        match self.versions.get(id) {
            None => Err(KeyError::Unknown(id.to_string())),
            Some((KeyState::Disabled, _)) => Err(KeyError::Disabled(id.to_string())),
            Some((KeyState::Destroyed, _)) => Err(KeyError::Destroyed(id.to_string())),
            Some((_, key)) => Ok(Arc::clone(key)),
        }
    }

    fn legacy_key(&self, id: &str) -> Result<Arc<LegacyKey>, KeyError> {
        self.legacy
            .get(id)
            .cloned()
            .ok_or_else(|| KeyError::Unknown(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    #[test]
    fn one_primary_at_a_time() {
        let mut ring = MemoryKeyring::with_primary(id("k1"), SecretBytes32::new([1; 32]));
        ring.insert(id("k2"), SecretBytes32::new([2; 32]), KeyState::Primary);
        assert_eq!(ring.primary().unwrap().id(), &id("k2"));
        // k1 was retired, so it still decrypts.
        assert_eq!(
            ring.key(&id("k1")).unwrap().secret().expose_secret(),
            &[1; 32]
        );
        ring.transition(&id("k1"), Transition::Promote).unwrap();
        assert_eq!(ring.primary().unwrap().id(), &id("k1"));
    }

    #[test]
    fn transitions_follow_the_keyring_files_rules() {
        let mut ring = MemoryKeyring::with_primary(id("k1"), SecretBytes32::new([1; 32]));
        ring.insert(id("k2"), SecretBytes32::new([2; 32]), KeyState::Pending);
        let refused = ring.transition(&id("k1"), Transition::Disable).unwrap_err();
        assert!(matches!(refused, KeyError::Refused { .. }), "{refused}");
        assert!(matches!(
            ring.transition(&id("k2"), Transition::Destroy),
            Err(KeyError::Refused { .. })
        ));
        assert_eq!(
            ring.transition(&id("k2"), Transition::Disable).unwrap(),
            KeyState::Disabled
        );
        assert_eq!(
            ring.transition(&id("k2"), Transition::Destroy).unwrap(),
            KeyState::Destroyed
        );
        // Nothing comes back from destroyed, not even as primary.
        for t in [Transition::Promote, Transition::Enable, Transition::Retire] {
            assert!(ring.transition(&id("k2"), t).is_err(), "{t:?}");
        }
        assert!(matches!(ring.key(&id("k2")), Err(KeyError::Destroyed(_))));
        assert!(matches!(
            ring.transition(&id("k9"), Transition::Promote),
            Err(KeyError::Unknown(_))
        ));
    }

    #[test]
    fn states_gate_decryption() {
        let mut ring = MemoryKeyring::with_primary(id("k1"), SecretBytes32::new([1; 32]));
        ring.insert(id("k0"), SecretBytes32::new([0; 32]), KeyState::Disabled);
        ring.insert(id("kx"), SecretBytes32::new([9; 32]), KeyState::Destroyed);
        assert!(matches!(ring.key(&id("k0")), Err(KeyError::Disabled(k)) if k == "k0"));
        assert!(matches!(ring.key(&id("kx")), Err(KeyError::Destroyed(_))));
        assert!(matches!(ring.key(&id("nope")), Err(KeyError::Unknown(s)) if s == "nope"));
        assert!(matches!(
            MemoryKeyring::new().primary(),
            Err(KeyError::NoPrimary)
        ));
        assert_eq!(
            ring.key(&id("k0")).unwrap_err().to_string(),
            "key k0 is disabled"
        );
    }

    #[test]
    fn legacy_keys_are_found_by_their_id() {
        let mut ring = MemoryKeyring::new();
        ring.insert_legacy(LegacyKey::new("test-key-id", SecretBytes32::new([3; 32])));
        assert_eq!(ring.legacy_key("test-key-id").unwrap().id(), "test-key-id");
        assert!(matches!(
            ring.legacy_key("other"),
            Err(KeyError::Unknown(_))
        ));
    }
}
