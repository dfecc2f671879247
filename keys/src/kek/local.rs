//! The local master key: a 256-bit key-encryption key held by the process.
//!
//! For development, tests and single-machine setups. A wrapped data key is
//! `0x01 || nonce(12) || AES-256-GCM(master, nonce, DEK, AAD) || tag(16)`
//! (61 bytes), with `AAD = "tcodec-dek-v1\n" || context`, the context being
//! [`EncryptionContext::canonical_bytes`]. The keyring names the master key by
//! its fingerprint, the first 8 bytes of
//! `SHA-256("tcodec local master key fingerprint v1\n" || master)` in hex, so a
//! reader configured with another master key gets a clear error, not a
//! decryption failure.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::{EncryptionContext, KekError, KekProvider};
use crate::SecretBytes32;
use crate::document::KekRef;

/// Provider name of the local master key.
pub const PROVIDER: &str = "local";
/// The environment variable that may hold the master key (hex or base64).
pub const MASTER_KEY_ENV: &str = "TCODEC_MASTER_KEY";

const WRAP_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"tcodec-dek-v1\n";
const WRAPPED_LEN: usize = 1 + NONCE_LEN + 32 + 16;

/// The local master key. `Debug` shows only its fingerprint.
pub struct LocalKek {
    cipher: Aes256Gcm,
    fingerprint: String,
    rng: SystemRandom,
}

impl LocalKek {
    /// A KEK from 32 key bytes.
    pub fn new(master: &SecretBytes32) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"tcodec local master key fingerprint v1\n");
        ctx.update(master.expose_secret());
        let digest = ctx.finish();
        let fingerprint = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            cipher: Aes256Gcm::new(master.expose_secret().into()),
            fingerprint,
            rng: SystemRandom::new(),
        }
    }

    /// Parses a master key written as 64 hex digits or as base64 of 32 bytes
    /// (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, KekError> {
        Ok(Self::new(&parse_key(text).map_err(KekError::MasterKey)?))
    }

    /// Reads the master key from a file: 32 raw bytes, or hex or base64 text.
    /// On Unix, as ssh does with private keys, a file that its group or others
    /// may access is refused (`chmod 600` it; in Kubernetes, mount the Secret
    /// with `defaultMode: 0400`).
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let master = read_key_file(path).map_err(KekError::MasterKey)?;
        Ok(Self::new(&master))
    }

    /// Reads the master key from [`MASTER_KEY_ENV`], if set.
    ///
    /// (The variable is the process's to guard; no mode applies to it.)
    pub fn from_env() -> Result<Option<Self>, KekError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                Self::parse(&value).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(KekError::MasterKey(format!("{MASTER_KEY_ENV} is not text")))
            }
        }
    }

    /// Generates a new random master key, as 64 hex digits.
    pub fn generate_hex() -> Result<Zeroizing<String>, KekError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| KekError::Random)?;
        Ok(Zeroizing::new(
            key.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// The master key's fingerprint, as keyrings name it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn check(&self, kek: &KekRef, ctx: &EncryptionContext) -> Result<(), KekError> {
        if kek.provider != PROVIDER || kek.key != self.fingerprint {
            return Err(KekError::WrongMasterKey {
                key_id: ctx.key_id().to_owned(),
                wrapped_by: kek.to_string(),
                configured: self.fingerprint.clone(),
            });
        }
        Ok(())
    }

    fn aad(ctx: &EncryptionContext) -> Vec<u8> {
        let mut aad = AAD_PREFIX.to_vec();
        aad.extend(ctx.canonical_bytes());
        aad
    }

    /// Wraps `dek` with a given nonce. Only test vectors fix the nonce.
    pub fn wrap_with_nonce(
        &self,
        dek: &SecretBytes32,
        ctx: &EncryptionContext,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, KekError> {
        let aad = Self::aad(ctx);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: dek.expose_secret(),
                    aad: &aad,
                },
            )
            .map_err(|_| KekError::Random)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

impl KekProvider for LocalKek {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn kek_ref(&self, key: Option<&str>) -> Result<KekRef, KekError> {
        match key {
            Some(k) if k != self.fingerprint => Err(KekError::MasterKey(format!(
                "the configured master key is {}, not {k}",
                self.fingerprint
            ))),
            _ => Ok(KekRef {
                provider: PROVIDER.to_owned(),
                key: self.fingerprint.clone(),
            }),
        }
    }

    fn generate(
        &self,
        kek: &KekRef,
        ctx: &EncryptionContext,
    ) -> Result<(SecretBytes32, Vec<u8>), KekError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        self.rng
            .fill(bytes.as_mut())
            .map_err(|_| KekError::Random)?;
        let dek = SecretBytes32::new(*bytes);
        let wrapped = self.wrap(kek, &dek, ctx)?;
        Ok((dek, wrapped))
    }

    fn wrap(
        &self,
        kek: &KekRef,
        dek: &SecretBytes32,
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KekError> {
        self.check(kek, ctx)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| KekError::Random)?;
        self.wrap_with_nonce(dek, ctx, nonce)
    }

    fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<SecretBytes32, KekError> {
        self.check(kek, ctx)?;
        let refused = || KekError::Unwrap {
            key_id: ctx.key_id().to_owned(),
            kek: kek.clone(),
        };
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_VERSION {
            return Err(refused());
        }
        let nonce: [u8; NONCE_LEN] = wrapped[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| refused())?;
        let aad = Self::aad(ctx);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &wrapped[1 + NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| refused())?,
        );
        SecretBytes32::from_slice(&plain).ok_or_else(refused)
    }
}

/// Refuses a master key file whose group or others have any access to it.
#[cfg(unix)]
fn refuse_shared(path: &Path, file: &std::fs::File) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is accessible to its group or others (mode {:04o}): `chmod 600` it",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_shared(_: &Path, _: &std::fs::File) -> Result<(), String> {
    Ok(())
}

/// Parses a 256-bit key written as 64 hex digits or as base64 of 32 bytes
/// (surrounding white space ignored).
fn parse_key(text: &str) -> Result<SecretBytes32, String> {
    let text = text.trim();
    let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "not 64 hex digits or base64".to_owned())?
        },
    );
    SecretBytes32::from_slice(&bytes)
        .ok_or_else(|| format!("must be 32 bytes, not {}", bytes.len()))
}

/// Reads a 256-bit key from a file: 32 raw bytes (a 32-character text key
/// as the samples write one, with or without a final newline), or 64 hex
/// digits, or base64. On Unix a file its group or others may access is
/// refused. Errors name the file, never its content.
pub fn read_key_file(path: &Path) -> Result<SecretBytes32, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    refuse_shared(path, &file)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    file.by_ref()
        .take(4096)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let raw = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .filter(|b| b.len() == 32)
        .unwrap_or(&bytes);
    if let Some(key) = SecretBytes32::from_slice(raw) {
        return Ok(key);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{} is not 32 bytes, hex or base64", path.display()))?;
    parse_key(text).map_err(|e| format!("{}: {e}", path.display()))
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}
