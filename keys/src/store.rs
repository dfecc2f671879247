//! Writing keyring files safely: read-modify-write under an exclusive lock,
//! written to a temporary file, flushed, and renamed over the old one, so a
//! reader sees the old document or the new one, never half of either, and two
//! concurrent writers never lose an update.
//!
//! On Unix the new file keeps the old one's mode, owner and group (a new
//! keyring is `0600`), and the lock file is opened without following a
//! symlink, so whoever may write the directory cannot point the lock at
//! another file to have it created or truncated.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::document::{DocumentError, KeyringDocument};

/// Why a keyring file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, locking or renaming failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a valid keyring.
    #[error("{path} is not a valid keyring")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DocumentError,
    },
    /// `init` found a keyring already there.
    #[error("{0} already exists; refusing to overwrite a keyring")]
    Exists(PathBuf),
    /// The change itself was refused.
    #[error(transparent)]
    Refused(DocumentError),
    /// The key-encryption keys the document needs could not be set up
    /// ([`FileKeyring::open_with`](crate::FileKeyring::open_with)).
    #[error(transparent)]
    Kek(crate::kek::KekError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Reads and validates a keyring file.
pub fn read(path: &Path) -> Result<KeyringDocument, StoreError> {
    let bytes = fs::read(path).map_err(io("cannot read keyring", path))?;
    KeyringDocument::from_json(&bytes).map_err(|source| StoreError::Invalid {
        path: path.to_owned(),
        source,
    })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Holds the keyring's lock file exclusively until dropped.
struct Lock(#[allow(dead_code)] File);

fn lock(path: &Path) -> Result<Lock, StoreError> {
    let lock_path = lock_path(path);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(&lock_path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return io("refusing a lock file that is a symlink", &lock_path)(e);
        }
        io("cannot open lock file", &lock_path)(e)
    })?;
    file.lock().map_err(io("cannot lock", &lock_path))?;
    Ok(Lock(file))
}

/// Writes `doc` to `path` atomically: temporary file in the same directory,
/// fsync, rename, fsync of the directory. On any failure the old file is
/// untouched and the temporary file removed.
fn write_atomic(path: &Path, doc: &KeyringDocument) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("cannot create temporary keyring", &tmp))?;
        keep_mode_and_owner(&file, path, &tmp)?;
        file.write_all(&doc.to_json())
            .map_err(io("cannot write temporary keyring", &tmp))?;
        file.sync_all()
            .map_err(io("cannot flush temporary keyring", &tmp))?;
        fs::rename(&tmp, path).map_err(io("cannot replace keyring", path))?;
        // Make the rename itself durable.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot flush directory", &dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Gives `file` (the temporary keyring at `tmp`) the mode, owner and group
/// of the keyring at `path`, or `0600` when there is none yet. A rotation
/// that cannot keep the owner (not run as it or root) fails rather than hand
/// the keyring to whoever ran it.
#[cfg(unix)]
fn keep_mode_and_owner(file: &File, path: &Path, tmp: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("cannot read the mode of", path)(e)),
    };
    if let Some(old) = &old {
        let new = file
            .metadata()
            .map_err(io("cannot read the mode of", tmp))?;
        if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(|e| {
                StoreError::Io {
                    action: "cannot keep the owner and group of",
                    path: path.to_owned(),
                    source: std::io::Error::new(
                        e.kind(),
                        format!(
                            "uid {} gid {}: {e}; run as that user (or root)",
                            old.uid(),
                            old.gid()
                        ),
                    ),
                }
            })?;
        }
    }
    let mode = old.map_or(0o600, |m| m.mode() & 0o7777);
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("cannot set the mode of", tmp))
}

#[cfg(not(unix))]
fn keep_mode_and_owner(_: &File, _: &Path, _: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Creates a new keyring file; fails if one exists.
pub fn create(path: &Path, doc: &KeyringDocument) -> Result<(), StoreError> {
    let _lock = lock(path)?;
    if path.exists() {
        return Err(StoreError::Exists(path.to_owned()));
    }
    write_atomic(path, doc)
}

/// Applies `change` to the keyring at `path` under its lock and writes the
/// result with the revision bumped. If `change` fails, nothing is written.
/// `change` may fail with an error of its own (a KEK's, say) that any
/// [`StoreError`] converts into.
pub fn update<T, E: From<StoreError>>(
    path: &Path,
    change: impl FnOnce(&mut KeyringDocument) -> Result<T, E>,
) -> Result<(T, KeyringDocument), E> {
    let _lock = lock(path)?;
    let mut doc = read(path)?;
    let out = change(&mut doc)?;
    doc.bump_revision();
    write_atomic(path, &doc)?;
    Ok((out, doc))
}
