//! The tcodec v1 wire format. `FORMAT.md` at the repository root is the
//! normative description; this module is its implementation.
//!
//! ```text
//! metadata: encoding = "binary/tcodec", tcodec-key-id = <key id>
//! data:     version(1) alg(1) flags(1) id_len(1) key_id(id_len) | nonce(24) | ciphertext | tag(16)
//!           \______________ header = AAD ________________/
//! ```

use bytes::{Buf, Bytes};
use tcodec_keys::KeyId;

use crate::xaes::{AeadError, NONCE_LEN, TAG_LEN, Xaes256Gcm};

/// How many nested encodings (tcodec or legacy) one payload may carry. The
/// samples' compress-then-encrypt chain is two; more is treated as malformed.
pub const MAX_LAYERS: usize = 4;

/// The metadata key that names a payload's encoding.
pub const METADATA_ENCODING: &str = "encoding";
/// The `encoding` of a tcodec payload.
pub const ENCODING: &str = "binary/tcodec";
/// The metadata key that repeats the header's key id, for operators.
pub const METADATA_KEY_ID: &str = "tcodec-key-id";

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Algorithm byte for XAES-256-GCM.
pub const ALG_XAES_256_GCM: u8 = 1;
/// Flag bit: the plaintext is a zstd frame of the serialized inner payload.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
const KNOWN_FLAGS: u8 = FLAG_ZSTD;

/// Bytes of the header before the key id.
const FIXED_HEADER_LEN: usize = 4;

/// What a header says; every field of it is authenticated as AAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key version that sealed the payload.
    pub key_id: KeyId,
    /// Whether the plaintext is zstd-compressed.
    pub zstd: bool,
}

/// Why a header could not be read. Each maps to a distinct, safe message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than a header, nonce and tag need.
    #[error("data is truncated")]
    Truncated,
    /// The version byte names a version this build does not know.
    #[error("format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// The algorithm byte names an unknown algorithm.
    #[error("algorithm {0} is not supported")]
    UnsupportedAlgorithm(u8),
    /// Flag bits this version does not define are set.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The key id in the header is not a valid key id.
    #[error("the header's key id is invalid")]
    InvalidKeyId,
}

impl Header {
    /// The header's length in bytes, as written.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + self.key_id.as_bytes().len()
    }

    /// Appends the header's bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        let id = self.key_id.as_bytes();
        // KeyId guarantees 1..=64 bytes, so the length fits a byte.
        out.extend_from_slice(&[
            VERSION,
            ALG_XAES_256_GCM,
            if self.zstd { FLAG_ZSTD } else { 0 },
            id.len() as u8,
        ]);
        out.extend_from_slice(id);
    }

    /// Reads a header from the start of `data`, checking that a nonce and a tag
    /// follow it. Returns the header and its length.
    pub fn parse(data: &[u8]) -> Result<(Self, usize), HeaderError> {
        let (view, len) = HeaderView::parse(data)?;
        let header = Self {
            key_id: KeyId::new(view.key_id).map_err(|_| HeaderError::InvalidKeyId)?,
            zstd: view.zstd,
        };
        Ok((header, len))
    }
}

/// A [`Header`] read in place: the key id borrowed from the data, so that
/// reading one allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The key version that sealed the payload (a valid key id).
    pub key_id: &'a str,
    /// Whether the plaintext is zstd-compressed.
    pub zstd: bool,
}

impl<'a> HeaderView<'a> {
    /// Reads a header from the start of `data`, checking that a nonce and a tag
    /// follow it. Returns the header and its length.
    pub fn parse(data: &'a [u8]) -> Result<(Self, usize), HeaderError> {
        let &[version, algorithm, flags, id_len, ..] = data else {
            return Err(HeaderError::Truncated);
        };
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        if algorithm != ALG_XAES_256_GCM {
            return Err(HeaderError::UnsupportedAlgorithm(algorithm));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(HeaderError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        let header_len = FIXED_HEADER_LEN + usize::from(id_len);
        if data.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(HeaderError::Truncated);
        }
        let key_id = std::str::from_utf8(&data[FIXED_HEADER_LEN..header_len])
            .map_err(|_| HeaderError::InvalidKeyId)?;
        KeyId::check(key_id).map_err(|_| HeaderError::InvalidKeyId)?;
        let header = Self {
            key_id,
            zstd: flags & FLAG_ZSTD != 0,
        };
        Ok((header, header_len))
    }
}

/// Seals a plaintext into tcodec `data`: header, then `nonce`, then ciphertext
/// and tag. `fill` appends the plaintext to the buffer it is given, so that
/// callers can serialize straight into the output without a copy.
///
/// The nonce must be unique for the key: the codec draws it from the system
/// CSPRNG. Only test-vector code passes fixed nonces.
pub fn seal_with(
    cipher: &Xaes256Gcm,
    header: &Header,
    nonce: &[u8; NONCE_LEN],
    plaintext_len: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, AeadError> {
    let mut out = Vec::with_capacity(header.encoded_len() + NONCE_LEN + plaintext_len + TAG_LEN);
    header.write(&mut out);
    let header_len = out.len();
    out.extend_from_slice(nonce);
    let start = out.len();
    fill(&mut out);
    let (head, body) = out.split_at_mut(start);
    let tag = cipher.seal_in_place_detached(nonce, &head[..header_len], body)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// [`seal_with`] for a plaintext already in a slice.
pub fn seal(
    cipher: &Xaes256Gcm,
    header: &Header,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    seal_with(cipher, header, nonce, plaintext.len(), |out| {
        out.extend_from_slice(plaintext)
    })
}

/// Opens tcodec `data` whose header (of `header_len` bytes, already parsed)
/// named the key behind `cipher`. Returns the plaintext.
pub fn open(cipher: &Xaes256Gcm, data: &[u8], header_len: usize) -> Result<Vec<u8>, AeadError> {
    let (aad, rest) = data.split_at_checked(header_len).ok_or(AeadError)?;
    let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(AeadError)?;
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| AeadError)?;
    let mut buf = sealed.to_vec();
    let len = cipher.open_in_place(nonce, aad, &mut buf)?.len();
    buf.truncate(len);
    Ok(buf)
}

/// [`open`] for data the caller hands over: when nothing else shares the
/// buffer, it is decrypted where it is and the plaintext is a view of it;
/// otherwise this copies, as `open` does.
pub fn open_owned(cipher: &Xaes256Gcm, data: Bytes, header_len: usize) -> Result<Bytes, AeadError> {
    let mut buf = match data.try_into_mut() {
        Ok(buf) => buf,
        Err(shared) => return open(cipher, &shared, header_len).map(Bytes::from),
    };
    let len = open_in_place(cipher, &mut buf, header_len)?.len();
    buf.advance(header_len + NONCE_LEN);
    buf.truncate(len);
    Ok(buf.freeze())
}

/// [`open`] in the caller's buffer: decrypts `data` where it is and returns
/// the plaintext, the part of `data` after the header and nonce.
pub fn open_in_place<'a>(
    cipher: &Xaes256Gcm,
    data: &'a mut [u8],
    header_len: usize,
) -> Result<&'a mut [u8], AeadError> {
    let start = header_len.checked_add(NONCE_LEN).ok_or(AeadError)?;
    let (head, sealed) = data.split_at_mut_checked(start).ok_or(AeadError)?;
    let (aad, nonce) = head.split_at(header_len);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| AeadError)?;
    cipher.open_in_place(nonce, aad, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: &str, zstd: bool) -> Header {
        Header {
            key_id: KeyId::new(id).unwrap(),
            zstd,
        }
    }

    #[test]
    fn open_owned_decrypts_in_place_unless_the_buffer_is_shared() {
        let cipher = Xaes256Gcm::new(&tcodec_keys::SecretBytes32::new([7; 32]));
        let h = header("k1", false);
        let sealed = seal(&cipher, &h, &[3; NONCE_LEN], b"opened where it lies").unwrap();

        let owned = Bytes::from(sealed.clone());
        let region = owned.as_ptr() as usize..owned.as_ptr() as usize + owned.len();
        let plain = open_owned(&cipher, owned, h.encoded_len()).unwrap();
        assert_eq!(&plain[..], b"opened where it lies");
        assert!(region.contains(&(plain.as_ptr() as usize)), "not in place");

        let shared = Bytes::from(sealed.clone());
        let other = shared.clone();
        let plain = open_owned(&cipher, shared, h.encoded_len()).unwrap();
        assert_eq!(&plain[..], b"opened where it lies");
        assert_eq!(other, sealed, "a shared buffer was written to");

        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open_owned(&cipher, Bytes::from(tampered), h.encoded_len()),
            Err(AeadError)
        );
        assert_eq!(
            open_owned(&cipher, Bytes::from(vec![0u8; 8]), h.encoded_len()),
            Err(AeadError)
        );
    }

    #[test]
    fn header_round_trips() {
        for h in [header("k1", false), header(&"x".repeat(64), true)] {
            let mut bytes = Vec::new();
            h.write(&mut bytes);
            assert_eq!(bytes.len(), h.encoded_len());
            bytes.extend_from_slice(&[0; NONCE_LEN + TAG_LEN]);
            assert_eq!(Header::parse(&bytes), Ok((h.clone(), h.encoded_len())));
        }
    }

    #[test]
    fn header_rejects_what_it_does_not_know() {
        let mut good = Vec::new();
        header("k1", false).write(&mut good);
        good.extend_from_slice(&[0; NONCE_LEN + TAG_LEN]);

        let with = |i: usize, b: u8| {
            let mut d = good.clone();
            d[i] = b;
            Header::parse(&d).map(|_| ())
        };
        assert_eq!(with(0, 2), Err(HeaderError::UnsupportedVersion(2)));
        assert_eq!(with(0, 0), Err(HeaderError::UnsupportedVersion(0)));
        assert_eq!(with(1, 7), Err(HeaderError::UnsupportedAlgorithm(7)));
        assert_eq!(with(2, 0x82), Err(HeaderError::UnknownFlags(0x82)));
        assert_eq!(with(3, 0), Err(HeaderError::InvalidKeyId));
        assert_eq!(with(4, b'/'), Err(HeaderError::InvalidKeyId));
        assert_eq!(with(3, 200), Err(HeaderError::Truncated));
        assert_eq!(Header::parse(&good[..3]), Err(HeaderError::Truncated));
        assert_eq!(
            Header::parse(&good[..good.len() - 1]),
            Err(HeaderError::Truncated)
        );
    }
}
