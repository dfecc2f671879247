//! A keyring read from a file, kept current while the process runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread;
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::document::{KeyVersion, KeyringDocument, LegacyKeyVersion};
use crate::kek::{EncryptionContext, ForeignKek, KekError, KekSettings, Keks};
use crate::store::{self, StoreError};
use crate::{DataKey, KeyError, KeyId, KeySource, KeyState, LegacyKey, SecretBytes32};

/// How often workers and codec servers check their keyring file for changes
/// ([`FileKeyring::watch`]): in every language, a `tcodec keys add`,
/// `promote` or `rotate` reaches them within this interval.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The environment variable naming the keyring file, in every language.
pub const KEYRING_ENV: &str = "TCODEC_KEYRING";

/// The keyring file's path from the environment ([`KEYRING_ENV`]), if set.
pub fn keyring_path_from_env() -> Option<PathBuf> {
    std::env::var_os(KEYRING_ENV).map(PathBuf::from)
}

/// What identifies one version of the file on disk, cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

struct Loaded {
    doc: Arc<KeyringDocument>,
    stamp: Option<Stamp>,
}

struct Inner {
    path: PathBuf,
    keks: Keks,
    loaded: RwLock<Loaded>,
    /// Unwrapped data keys by id, with the wrapped bytes they came from, so a
    /// rewrapped or replaced key is unwrapped afresh.
    cache: Mutex<HashMap<KeyId, (String, Arc<DataKey>)>>,
    /// Unwrapped legacy keys by id, with the wrapped bytes they came from.
    legacy: Mutex<HashMap<String, (String, Arc<LegacyKey>)>>,
    /// temporal-proxy data keys by (KEK URI, wrapped key), unwrapped once.
    proxy: Mutex<HashMap<(String, String), Arc<SecretBytes32>>>,
    /// Count of successful reloads that changed the document; waiters use it.
    generation: Mutex<u64>,
    changed: Condvar,
    last_error: Mutex<Option<String>>,
}

/// A keyring backed by a file, with its data keys unwrapped once and cached.
///
/// - Each key version's data key is unwrapped by its KEK on first use and kept:
///   KEK (KMS) calls scale with key versions, not payloads. If the KEK cannot be
///   reached, keys already unwrapped keep working and the rest fail with
///   [`KeyError::Unavailable`].
/// - The file is re-read when it changes: by [`FileKeyring::watch`], by
///   [`FileKeyring::reload`], and once whenever a payload names a key id the
///   keyring does not have. A corrupt or half-written file is refused with an
///   error ([`FileKeyring::last_reload_error`]) and the last good keyring stays
///   in use.
///
/// Cloning is cheap and shares the keyring.
#[derive(Clone)]
pub struct FileKeyring {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let doc = self.document();
        f.debug_struct("FileKeyring")
            .field("path", &self.inner.path)
            .field("name", &doc.name())
            .field("revision", &doc.revision())
            .finish_non_exhaustive()
    }
}

impl FileKeyring {
    /// Loads the keyring at `path`. Its data keys are unwrapped lazily with `keks`.
    pub fn open(path: impl Into<PathBuf>, keks: Keks) -> Result<Self, StoreError> {
        Self::open_with(path, |_| Ok(keks))
    }

    /// Loads the keyring at `path`, with the KEK providers `settings` gives
    /// for the providers its keys name (AWS KMS is started only if one does).
    /// What the CLI and workers call.
    pub fn open_with_settings(
        path: impl Into<PathBuf>,
        settings: &KekSettings,
    ) -> Result<Self, StoreError> {
        Self::open_with(path, |doc| settings.keks_for(doc))
    }

    /// Loads the keyring at `path`, reading the file once: `keks` chooses the
    /// KEK providers from the document read (a codec server serving several
    /// keyrings shares one KMS client among them this way).
    pub fn open_with(
        path: impl Into<PathBuf>,
        keks: impl FnOnce(&KeyringDocument) -> Result<Keks, KekError>,
    ) -> Result<Self, StoreError> {
        let path = path.into();
        let before = stamp(&path);
        let doc = store::read(&path)?;
        let keks = keks(&doc).map_err(StoreError::Kek)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                keks,
                loaded: RwLock::new(Loaded {
                    doc: Arc::new(doc),
                    stamp: before,
                }),
                cache: Mutex::new(HashMap::new()),
                legacy: Mutex::new(HashMap::new()),
                proxy: Mutex::new(HashMap::new()),
                generation: Mutex::new(0),
                changed: Condvar::new(),
                last_error: Mutex::new(None),
            }),
        })
    }

    /// The document currently in use.
    pub fn document(&self) -> Arc<KeyringDocument> {
        Arc::clone(&read_lock(&self.inner.loaded).doc)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Re-reads the file if it changed on disk. Returns whether a new document
    /// was taken into use. On error the current document stays in use, and the
    /// error is also kept for [`FileKeyring::last_reload_error`].
    pub fn reload(&self) -> Result<bool, StoreError> {
        let now = stamp(&self.inner.path);
        if now.is_some() && now == read_lock(&self.inner.loaded).stamp {
            return Ok(false);
        }
        let result = store::read(&self.inner.path);
        let mut last_error = lock(&self.inner.last_error);
        let doc = match result {
            Ok(doc) => {
                *last_error = None;
                doc
            }
            Err(e) => {
                *last_error = Some(crate::display_chain(&e));
                return Err(e);
            }
        };
        drop(last_error);
        let mut loaded = write_lock(&self.inner.loaded);
        if *loaded.doc == doc {
            loaded.stamp = now;
            return Ok(false);
        }
        if doc.name() != loaded.doc.name() || doc.revision() < loaded.doc.revision() {
            let msg = format!(
                "{} now holds keyring {:?} revision {}, in place of {:?} revision {}: refusing to go back or switch keyrings",
                self.inner.path.display(),
                doc.name(),
                doc.revision(),
                loaded.doc.name(),
                loaded.doc.revision()
            );
            *lock(&self.inner.last_error) = Some(msg);
            loaded.stamp = now;
            return Ok(false);
        }
        // Forget data keys that were destroyed, removed or rewrapped.
        lock(&self.inner.cache).retain(|id, (wrapped, _)| {
            doc.key(id.as_str())
                .is_some_and(|v| v.wrapped_dek.as_deref() == Some(wrapped.as_str()))
        });
        lock(&self.inner.legacy).retain(|id, (wrapped, _)| {
            doc.legacy(id)
                .is_some_and(|v| v.wrapped_key.as_deref() == Some(wrapped.as_str()))
        });
        *loaded = Loaded {
            doc: Arc::new(doc),
            stamp: now,
        };
        drop(loaded);
        *lock(&self.inner.generation) += 1;
        self.inner.changed.notify_all();
        Ok(true)
    }

    /// The error of the last reload that failed, if the last reload failed.
    pub fn last_reload_error(&self) -> Option<String> {
        lock(&self.inner.last_error).clone()
    }

    /// How many times a changed document has been taken into use.
    pub fn generation(&self) -> u64 {
        *lock(&self.inner.generation)
    }

    /// Waits until [`FileKeyring::generation`] exceeds `seen`, or `timeout`
    /// passes. Returns whether it did.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> bool {
        let guard = lock(&self.inner.generation);
        let (guard, _) = self
            .inner
            .changed
            .wait_timeout_while(guard, timeout, |g| *g <= seen)
            .unwrap_or_else(|e| e.into_inner());
        *guard > seen
    }

    /// Polls the file every `interval` in a background thread, reloading it
    /// when it changes. The thread stops when the returned handle is dropped or
    /// the keyring is gone.
    pub fn watch(&self, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let stop_flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("tcodec-keyring-watch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    thread::park_timeout(interval);
                    let Some(inner) = weak.upgrade() else { break };
                    // Errors are kept in last_reload_error; the old keyring stays.
                    let _ = FileKeyring { inner }.reload();
                }
            })
            .ok();
        Watcher { stop, thread }
    }

    fn version(&self, id: &KeyId) -> Option<KeyVersion> {
        read_lock(&self.inner.loaded).doc.key(id.as_str()).cloned()
    }

    /// A view of this keyring that answers from memory only: see [`InMemory`].
    pub fn in_memory(&self) -> InMemory {
        InMemory(self.clone())
    }

    /// The data key of `version`; with `fetch` false, only if it is in memory.
    fn data_key(
        &self,
        keyring: &str,
        version: &KeyVersion,
        fetch: bool,
    ) -> Result<Arc<DataKey>, KeyError> {
        match version.state {
            KeyState::Disabled => return Err(KeyError::Disabled(version.id.to_string())),
            KeyState::Destroyed => return Err(KeyError::Destroyed(version.id.to_string())),
            _ => {}
        }
        let Some(wrapped_b64) = version.wrapped_dek.as_deref() else {
            return Err(KeyError::Destroyed(version.id.to_string()));
        };
        if let Some((wrapped, key)) = lock(&self.inner.cache).get(&version.id)
            && wrapped == wrapped_b64
        {
            return Ok(Arc::clone(key));
        }
        if !fetch {
            return Err(KeyError::NotInMemory(version.id.to_string()));
        }
        let ctx = EncryptionContext::new(keyring, &version.id);
        // Unwrap outside the cache lock: a slow KMS must not stall cached keys.
        let secret = self.unwrap_stored(&version.kek, wrapped_b64, &ctx)?;
        let key = Arc::new(DataKey::new(version.id.clone(), secret));
        lock(&self.inner.cache).insert(
            version.id.clone(),
            (wrapped_b64.to_owned(), Arc::clone(&key)),
        );
        Ok(key)
    }
}

impl FileKeyring {
    /// The legacy key `id` (its state checked); with `fetch` false, only if
    /// it is in memory. An id the loaded keyring lacks is looked for once
    /// more in the file when `fetch` is on.
    fn legacy(&self, id: &str, fetch: bool) -> Result<Arc<LegacyKey>, KeyError> {
        let find = || self.document().legacy(id).cloned();
        let version: LegacyKeyVersion = match find() {
            Some(v) => v,
            None if fetch => {
                let _ = self.reload();
                find().ok_or_else(|| KeyError::Unknown(id.to_owned()))?
            }
            None => return Err(KeyError::NotInMemory(id.to_owned())),
        };
        match version.state {
            KeyState::Disabled => return Err(KeyError::Disabled(id.to_owned())),
            KeyState::Destroyed => return Err(KeyError::Destroyed(id.to_owned())),
            _ => {}
        }
        let Some(wrapped_b64) = version.wrapped_key.as_deref() else {
            return Err(KeyError::Destroyed(id.to_owned()));
        };
        if let Some((wrapped, key)) = lock(&self.inner.legacy).get(id)
            && wrapped == wrapped_b64
        {
            return Ok(Arc::clone(key));
        }
        if !fetch {
            return Err(KeyError::NotInMemory(id.to_owned()));
        }
        let ctx = EncryptionContext::legacy(self.document().name(), id);
        let secret = self.unwrap_stored(&version.kek, wrapped_b64, &ctx)?;
        let key = Arc::new(LegacyKey::new(id, secret));
        lock(&self.inner.legacy).insert(id.to_owned(), (wrapped_b64.to_owned(), Arc::clone(&key)));
        Ok(key)
    }

    /// Unwraps a key the keyring file stores (base64) under `kek` and `ctx`;
    /// any failure makes the key unavailable, naming it.
    fn unwrap_stored(
        &self,
        kek: &crate::document::KekRef,
        wrapped_b64: &str,
        ctx: &EncryptionContext,
    ) -> Result<SecretBytes32, KeyError> {
        let unavailable =
            |source: Box<dyn std::error::Error + Send + Sync>| KeyError::Unavailable {
                key_id: ctx.key_id().to_owned(),
                source,
            };
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(wrapped_b64)
            .map_err(|e| unavailable(Box::new(e)))?;
        self.inner
            .keks
            .unwrap(kek, &wrapped, ctx)
            .map_err(|e| unavailable(Box::new(e)))
    }

    /// A temporal-proxy data key; with `fetch` false, only if in memory.
    fn proxy(
        &self,
        kek_uri: &str,
        wrapped_b64: &str,
        fetch: bool,
    ) -> Result<Arc<SecretBytes32>, KeyError> {
        let cache_key = (kek_uri.to_owned(), wrapped_b64.to_owned());
        if let Some(key) = lock(&self.inner.proxy).get(&cache_key) {
            return Ok(Arc::clone(key));
        }
        if !fetch {
            return Err(KeyError::NotInMemory(kek_uri.to_owned()));
        }
        let unavailable =
            |source: Box<dyn std::error::Error + Send + Sync>| KeyError::Unavailable {
                key_id: kek_uri.to_owned(),
                source,
            };
        let not_allowed = |e: KekError| KeyError::NotAllowed {
            key_id: kek_uri.to_owned(),
            source: Box::new(e),
        };
        let foreign = ForeignKek::parse(kek_uri).map_err(not_allowed)?;
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(wrapped_b64)
            .map_err(|_| KeyError::Unusable {
                key_id: kek_uri.to_owned(),
                why: "its encryption-dek is not base64",
            })?;
        let secret = self
            .inner
            .keks
            .unwrap(&foreign.kek, &wrapped, &foreign.context)
            .map_err(|e| match e {
                KekError::NotAllowed { .. } | KekError::NotConfigured { .. } => not_allowed(e),
                KekError::Unwrap { .. } => KeyError::Unusable {
                    key_id: kek_uri.to_owned(),
                    why: "its KEK refused the wrapped data key (another key's, or corrupt)",
                },
                other => unavailable(Box::new(other)),
            })?;
        let key = Arc::new(secret);
        let mut cache = lock(&self.inner.proxy);
        // temporal-proxy makes a data key per namespace and period; a bound
        // keeps a flood of distinct wrapped keys from growing memory.
        if cache.len() >= PROXY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(cache_key, Arc::clone(&key));
        Ok(key)
    }
}

/// How many temporal-proxy data keys a keyring keeps unwrapped.
const PROXY_CACHE_LIMIT: usize = 4096;

impl KeySource for FileKeyring {
    fn primary(&self) -> Result<Arc<DataKey>, KeyError> {
        let doc = self.document();
        let primary = doc.primary().ok_or(KeyError::NoPrimary)?;
        self.data_key(doc.name(), primary, true)
    }

    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError> {
        let version = match self.version(id) {
            Some(v) => v,
            None => {
                // A key we have not seen: perhaps it was just added. Look once more.
                let _ = self.reload();
                self.version(id)
                    .ok_or_else(|| KeyError::Unknown(id.to_string()))?
            }
        };
        self.data_key(self.document().name(), &version, true)
    }

    fn legacy_key(&self, id: &str) -> Result<Arc<LegacyKey>, KeyError> {
        self.legacy(id, true)
    }

    fn proxy_key(&self, kek_uri: &str, wrapped: &str) -> Result<Arc<SecretBytes32>, KeyError> {
        self.proxy(kek_uri, wrapped, true)
    }
}

/// A [`FileKeyring`] that answers only from memory: it never reads the file
/// and never calls a KMS, so it answers in microseconds, from any thread.
/// A data key that has not been unwrapped yet, or a key id the loaded
/// keyring does not have (which the keyring itself would look for in the
/// file), is [`KeyError::NotInMemory`]; states are checked as the keyring
/// checks them. The codec server decodes small requests on its async
/// workers through this view, and moves a request to a blocking thread when
/// it answers `NotInMemory`.
#[derive(Debug, Clone)]
pub struct InMemory(FileKeyring);

impl KeySource for InMemory {
    fn primary(&self) -> Result<Arc<DataKey>, KeyError> {
        let doc = self.0.document();
        let primary = doc.primary().ok_or(KeyError::NoPrimary)?;
        self.0.data_key(doc.name(), primary, false)
    }

    fn key(&self, id: &KeyId) -> Result<Arc<DataKey>, KeyError> {
        let doc = self.0.document();
        let version = doc
            .key(id.as_str())
            .ok_or_else(|| KeyError::NotInMemory(id.to_string()))?;
        self.0.data_key(doc.name(), version, false)
    }

    fn legacy_key(&self, id: &str) -> Result<Arc<LegacyKey>, KeyError> {
        self.0.legacy(id, false)
    }

    fn proxy_key(&self, kek_uri: &str, wrapped: &str) -> Result<Arc<SecretBytes32>, KeyError> {
        self.0.proxy(kek_uri, wrapped, false)
    }
}

/// Stops the keyring watcher thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
