//! Keyring operations that need a KEK as well as the file: creating a keyring,
//! adding and rotating keys, rewrapping. The `tcodec keys` CLI is a thin layer
//! over these; every one runs under the keyring's lock ([`crate::store`]).

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;

use crate::document::{DocumentError, KekRef, KeyVersion, KeyringDocument};
use crate::kek::{EncryptionContext, KekError, Keks};
use crate::store::{self, StoreError};
use crate::{KeyId, KeyState};

/// Why a keyring operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Reading, validating or writing the keyring failed, or the change was refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The KEK could not generate, unwrap or wrap a data key.
    #[error(transparent)]
    Kek(#[from] KekError),
}

impl From<DocumentError> for OpError {
    fn from(e: DocumentError) -> Self {
        Self::Store(StoreError::Refused(e))
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn add_version(
    doc: &mut KeyringDocument,
    keks: &Keks,
    kek: &KekRef,
) -> Result<KeyVersion, OpError> {
    let id = doc.next_id();
    let ctx = EncryptionContext::new(doc.name(), &id);
    let (_dek, wrapped) = keks.provider_for(kek, &id)?.generate(kek, &ctx)?;
    Ok(doc
        .add(id, now_rfc3339(), kek.clone(), b64(&wrapped))
        .clone())
}

/// Creates the keyring file `path` called `name`, with a first key version
/// (primary) wrapped under `kek`.
pub fn init(
    path: &Path,
    name: &str,
    keks: &Keks,
    kek: &KekRef,
) -> Result<KeyringDocument, OpError> {
    let mut doc = KeyringDocument::new(name)?;
    add_version(&mut doc, keks, kek)?;
    doc.bump_revision();
    store::create(path, &doc)?;
    Ok(doc)
}

/// The KEK new keys get: `kek` if given, else the primary's.
fn kek_for_new(doc: &KeyringDocument, kek: Option<&KekRef>) -> Result<KekRef, OpError> {
    match (kek, doc.primary()) {
        (Some(k), _) => Ok(k.clone()),
        (None, Some(p)) => Ok(p.kek.clone()),
        (None, None) => Err(KekError::Setup {
            provider: "keyring",
            reason: "the keyring has no primary key to take a KEK from; name one".into(),
        }
        .into()),
    }
}

/// Adds a pending key version (phase one of a rotation).
pub fn add(path: &Path, keks: &Keks, kek: Option<&KekRef>) -> Result<KeyVersion, OpError> {
    let (version, _) = store::update(path, |doc| {
        let kek = kek_for_new(doc, kek).map_err(to_store)?;
        add_version(doc, keks, &kek).map_err(to_store)
    })
    .map_err(from_store)?;
    Ok(version)
}

/// Adds a key version and makes it primary at once (both phases of a rotation,
/// for setups where every reader shares the keyring file).
pub fn rotate(path: &Path, keks: &Keks, kek: Option<&KekRef>) -> Result<KeyVersion, OpError> {
    let (version, _) = store::update(path, |doc| {
        let kek = kek_for_new(doc, kek).map_err(to_store)?;
        let version = add_version(doc, keks, &kek).map_err(to_store)?;
        doc.promote(version.id.as_str())
            .map_err(StoreError::Refused)?;
        Ok(doc.key(version.id.as_str()).cloned().unwrap_or(version))
    })
    .map_err(from_store)?;
    Ok(version)
}

/// A lifecycle change that needs no KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// Make the key primary.
    Promote,
    /// Stop a pending key from becoming primary; it still decrypts.
    Retire,
    /// Refuse to decrypt with the key, reversibly.
    Disable,
    /// Undo a disable.
    Enable,
    /// Erase a disabled key's wrapped data key for good.
    Destroy,
}

/// Applies `transition` to key `id`. Returns the key's new state.
pub fn transition(path: &Path, id: &str, transition: Transition) -> Result<KeyState, OpError> {
    let (state, _) = store::update(path, |doc| {
        match transition {
            Transition::Promote => doc.promote(id),
            Transition::Retire => doc.retire(id),
            Transition::Disable => doc.disable(id),
            Transition::Enable => doc.enable(id),
            Transition::Destroy => doc.destroy(id),
        }
        .map_err(StoreError::Refused)?;
        Ok(doc.key(id).map(|k| k.state).unwrap_or(KeyState::Destroyed))
    })
    .map_err(from_store)?;
    Ok(state)
}

/// Re-wraps every live data key under `to`. Within one provider the provider
/// re-wraps without exposing the key (KMS ReEncrypt); across providers the key
/// is unwrapped here and wrapped again. Payloads are untouched. Returns the ids
/// rewrapped.
pub fn rewrap(path: &Path, keks: &Keks, to: &KekRef) -> Result<Vec<KeyId>, OpError> {
    let (ids, _) = store::update(path, |doc| {
        let mut done = Vec::new();
        let versions: Vec<KeyVersion> = doc.keys().to_vec();
        for v in versions {
            let Some(wrapped_b64) = &v.wrapped_dek else {
                continue;
            };
            if &v.kek == to {
                continue;
            }
            let wrapped = base64::engine::general_purpose::STANDARD
                .decode(wrapped_b64)
                .map_err(|_| {
                    to_store(OpError::Kek(KekError::Unwrap {
                        key_id: v.id.clone(),
                        kek: v.kek.clone(),
                    }))
                })?;
            let ctx = EncryptionContext::new(doc.name(), &v.id);
            let rewrapped = if v.kek.provider == to.provider {
                keks.provider_for(to, &v.id)
                    .and_then(|p| p.rewrap(&v.kek, &wrapped, to, &ctx))
            } else {
                keks.unwrap(&v.kek, &wrapped, &ctx)
                    .and_then(|dek| keks.provider_for(to, &v.id)?.wrap(to, &dek, &ctx))
            }
            .map_err(|e| to_store(e.into()))?;
            doc.set_wrapping(v.id.as_str(), to.clone(), b64(&rewrapped))
                .map_err(StoreError::Refused)?;
            done.push(v.id.clone());
        }
        Ok(done)
    })
    .map_err(from_store)?;
    Ok(ids)
}

// `store::update` speaks StoreError; KEK failures inside it travel as
// `StoreError::Io`-free wrappers and come back out unchanged.
fn to_store(e: OpError) -> StoreError {
    match e {
        OpError::Store(s) => s,
        OpError::Kek(k) => StoreError::Kek(k),
    }
}

fn from_store(e: StoreError) -> OpError {
    match e {
        StoreError::Kek(k) => OpError::Kek(k),
        other => OpError::Store(other),
    }
}
