//! Keyring operations that need a KEK as well as the file: creating a keyring,
//! adding and rotating keys, rewrapping. The `tcodec keys` CLI is a thin layer
//! over these; every one runs under the keyring's lock ([`crate::store`]).

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;

pub use crate::Transition;
use crate::document::{DocumentError, KekRef, KeyVersion, KeyringDocument, LegacyKeyVersion};
use crate::kek::{EncryptionContext, KekError, Keks};
use crate::store::{self, StoreError};
use crate::{KeyState, SecretBytes32};

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
    /// A new key needs a KEK, none was named, and there is no primary key to
    /// take one from.
    #[error("the keyring has no primary key to take a KEK from; name one")]
    NoPrimary,
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
    let (_dek, wrapped) = keks.provider_for(kek, id.as_str())?.generate(kek, &ctx)?;
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
        (None, None) => Err(OpError::NoPrimary),
    }
}

/// Adds a pending key version (phase one of a rotation). Returns it and the
/// keyring as written.
pub fn add(
    path: &Path,
    keks: &Keks,
    kek: Option<&KekRef>,
) -> Result<(KeyVersion, KeyringDocument), OpError> {
    add_and(path, keks, kek, false)
}

/// Adds a key version and makes it primary at once (both phases of a rotation,
/// for setups where every reader shares the keyring file). Returns it and the
/// keyring as written.
pub fn rotate(
    path: &Path,
    keks: &Keks,
    kek: Option<&KekRef>,
) -> Result<(KeyVersion, KeyringDocument), OpError> {
    add_and(path, keks, kek, true)
}

/// Adds a key version under the keyring's lock, promoting it if asked.
fn add_and(
    path: &Path,
    keks: &Keks,
    kek: Option<&KekRef>,
    promote: bool,
) -> Result<(KeyVersion, KeyringDocument), OpError> {
    store::update(path, |doc| {
        let kek = kek_for_new(doc, kek)?;
        let version = add_version(doc, keks, &kek)?;
        if !promote {
            return Ok(version);
        }
        doc.promote(version.id.as_str())?;
        Ok(doc.key(version.id.as_str()).cloned().unwrap_or(version))
    })
}

/// Imports a key of the samples' `binary/encrypted` format under its
/// `encryption-key-id` `id`, wrapped under `kek` (else the primary's KEK),
/// decrypt-only. Returns it and the keyring as written.
pub fn import_legacy(
    path: &Path,
    keks: &Keks,
    kek: Option<&KekRef>,
    id: &str,
    key: &SecretBytes32,
) -> Result<(LegacyKeyVersion, KeyringDocument), OpError> {
    crate::document::check_legacy_id(id)?;
    store::update(path, |doc| {
        if doc.legacy(id).is_some() || doc.key(id).is_some() {
            return Err(DocumentError::DuplicateLegacyId(id.to_owned()).into());
        }
        let kek = kek_for_new(doc, kek)?;
        let ctx = EncryptionContext::legacy(doc.name(), id);
        let wrapped = keks.provider_for(&kek, id)?.wrap(&kek, key, &ctx)?;
        Ok::<_, OpError>(
            doc.add_legacy(id, now_rfc3339(), kek, b64(&wrapped))?
                .clone(),
        )
    })
}

/// Applies `transition` to key `id`. Returns the key's new state.
pub fn transition(path: &Path, id: &str, transition: Transition) -> Result<KeyState, OpError> {
    let (state, _) = store::update(path, |doc| {
        doc.transition(id, transition)?;
        Ok::<_, OpError>(doc.state_of(id).unwrap_or(KeyState::Destroyed))
    })?;
    Ok(state)
}

/// Re-wraps every live data key under `to`. Within one provider the provider
/// re-wraps without exposing the key (KMS ReEncrypt); across providers the key
/// is unwrapped here and wrapped again. Legacy keys move too. Payloads are
/// untouched. Returns the ids rewrapped.
pub fn rewrap(path: &Path, keks: &Keks, to: &KekRef) -> Result<Vec<String>, OpError> {
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
            let ctx = EncryptionContext::new(doc.name(), &v.id);
            let rewrapped = rewrap_one(keks, &v.kek, wrapped_b64, to, &ctx)?;
            doc.set_wrapping(v.id.as_str(), to.clone(), b64(&rewrapped))?;
            done.push(v.id.to_string());
        }
        let legacy: Vec<LegacyKeyVersion> = doc.legacy_keys().to_vec();
        for v in legacy {
            let Some(wrapped_b64) = &v.wrapped_key else {
                continue;
            };
            if &v.kek == to {
                continue;
            }
            let ctx = EncryptionContext::legacy(doc.name(), &v.id);
            let rewrapped = rewrap_one(keks, &v.kek, wrapped_b64, to, &ctx)?;
            doc.set_legacy_wrapping(&v.id, to.clone(), b64(&rewrapped))?;
            done.push(v.id.clone());
        }
        Ok::<_, OpError>(done)
    })?;
    Ok(ids)
}

/// Moves one wrapped key from `from` to `to` (see [`rewrap`]).
fn rewrap_one(
    keks: &Keks,
    from: &KekRef,
    wrapped_b64: &str,
    to: &KekRef,
    ctx: &EncryptionContext,
) -> Result<Vec<u8>, KekError> {
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(wrapped_b64)
        .map_err(|_| KekError::Unwrap {
            key_id: ctx.key_id().to_owned(),
            kek: from.clone(),
        })?;
    if from.provider == to.provider {
        keks.provider_for(to, ctx.key_id())?
            .rewrap(from, &wrapped, to, ctx)
    } else {
        keks.unwrap(from, &wrapped, ctx)
            .and_then(|dek| keks.provider_for(to, ctx.key_id())?.wrap(to, &dek, ctx))
    }
}
