//! XAES-256-GCM, as specified by C2SP (<https://c2sp.org/XAES-256-GCM>).
//!
//! XAES-256-GCM is AES-256-GCM with a 192-bit nonce. The first 96 bits of the
//! nonce and the key derive a fresh AES-256 key (a NIST SP 800-108r1 KDF in
//! counter mode with CMAC-AES-256); the last 96 bits are the AES-GCM nonce under
//! that derived key. With random nonces, one key can seal far more than the
//! 2^32 messages plain AES-GCM allows (about 2^80 before a collision becomes a
//! concern), so a key version is safe for any realistic Temporal workload.
//!
//! The two primitives come from vetted crates: the key derivation uses the
//! RustCrypto `aes` block cipher, and the AEAD under the derived key is `ring`'s
//! AES-256-GCM, the fastest vetted implementation on this platform. The tests
//! check this composition against the C2SP vectors (both fixed vectors and the
//! 10,000-iteration accumulated vector) and against RustCrypto's
//! `xaes-256-gcm` crate on random inputs.
//!
//! The long-lived key (its AES key schedule and the CMAC subkey `K1`) is
//! zeroized on drop. The per-message derived key is wiped right after `ring`
//! has expanded it; `ring` does not wipe its own expanded copy, which protects
//! only that one message and does not reveal the long-lived key.

use std::fmt;

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use tcodec_keys::SecretBytes32;

/// Length of an XAES-256-GCM nonce, in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the authentication tag, in bytes.
pub const TAG_LEN: usize = 16;

/// The opaque failure of sealing or opening. It says nothing about *why*, so
/// that it cannot serve as an oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("XAES-256-GCM operation failed")]
pub struct AeadError;

/// An XAES-256-GCM key, ready to seal and open.
///
/// Nonces must never repeat under one key; draw them from a CSPRNG.
/// `Debug` prints no key material.
pub struct Xaes256Gcm {
    aes: Aes256,
    k1: [u8; 16],
}

impl Xaes256Gcm {
    /// Prepares `key` for use: expands the AES-256 key schedule and computes the
    /// CMAC subkey `K1` (spec steps 1 and 2).
    pub fn new(key: &SecretBytes32) -> Self {
        let aes = Aes256::new(key.expose_secret().into());
        // L = AES-256_K(0^128)
        let mut l = aes::Block::default();
        aes.encrypt_block(&mut l);
        // K1 = L << 1, XOR 0x87 into the last byte when the top bit of L was set.
        let mut k1 = [0u8; 16];
        let mut carry = 0u8;
        for i in (0..16).rev() {
            k1[i] = (l[i] << 1) | carry;
            carry = l[i] >> 7;
        }
        k1[15] ^= 0x87 * carry;
        l.as_mut_slice().zeroize();
        Self { aes, k1 }
    }

    /// Derives the per-message AES-256-GCM key from the first half of the nonce
    /// (spec steps 3 to 5) and runs `f` with `ring`'s key and the GCM nonce.
    /// The key is used where it is made: `ring`'s expanded key is large, and
    /// handing it back would copy it once more per message.
    #[inline(always)]
    fn with_message_key<R>(
        &self,
        nonce: &[u8; NONCE_LEN],
        f: impl FnOnce(&LessSafeKey, Nonce) -> Result<R, AeadError>,
    ) -> Result<R, AeadError> {
        let mut derived = Zeroizing::new([0u8; 32]);
        for (counter, half) in derived.chunks_exact_mut(16).enumerate() {
            // M_i = [0x00, i, 'X', 0x00] || N[:12], i = 1, 2; K_i = AES-256_K(M_i XOR K1)
            let mut block = aes::Block::default();
            block[1] = counter as u8 + 1;
            block[2] = b'X';
            block[4..].copy_from_slice(&nonce[..12]);
            for (b, k) in block.iter_mut().zip(self.k1) {
                *b ^= k;
            }
            self.aes.encrypt_block(&mut block);
            half.copy_from_slice(&block);
            block.as_mut_slice().zeroize();
        }
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_slice()).map_err(|_| AeadError)?;
        let gcm_nonce = Nonce::try_assume_unique_for_key(&nonce[12..]).map_err(|_| AeadError)?;
        f(&LessSafeKey::new(unbound), gcm_nonce)
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub fn seal_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.with_message_key(nonce, |key, gcm_nonce| {
            let tag = key
                .seal_in_place_separate_tag(gcm_nonce, Aad::from(aad), in_out)
                .map_err(|_| AeadError)?;
            tag.as_ref().try_into().map_err(|_| AeadError)
        })
    }

    /// Decrypts `ciphertext || tag` in place and returns the plaintext, a prefix
    /// of `buf`. On failure nothing of the plaintext is returned.
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], AeadError> {
        if buf.len() < TAG_LEN {
            return Err(AeadError);
        }
        self.with_message_key(nonce, |key, gcm_nonce| {
            key.open_in_place(gcm_nonce, Aad::from(aad), buf)
                .map_err(|_| AeadError)
        })
    }
}

impl Drop for Xaes256Gcm {
    fn drop(&mut self) {
        // `Aes256` wipes its own key schedule (the `zeroize` feature of `aes`).
        self.k1.zeroize();
    }
}

impl fmt::Debug for Xaes256Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xaes256Gcm").finish_non_exhaustive()
    }
}
