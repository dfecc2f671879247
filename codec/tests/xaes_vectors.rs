//! XAES-256-GCM against the C2SP specification's vectors and against RustCrypto's
//! independent `xaes-256-gcm` implementation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use proptest::prelude::*;
use serde::Deserialize;
use sha3::Shake128;
use sha3::digest::{ExtendableOutput, Update, XofReader};
use tcodec::keys::SecretBytes32;
use tcodec::xaes::{AeadError, NONCE_LEN, Xaes256Gcm};

#[derive(Deserialize)]
struct File {
    accumulated: Vec<Accumulated>,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Accumulated {
    iterations: usize,
    sha3_shake128_digest: String,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    expect: String,
    key: String,
    nonce_text: String,
    plaintext_text: String,
    aad_text: String,
    ciphertext: String,
}

/// `ciphertext || tag` of `plaintext`, through the in-place API the codec uses.
fn seal(
    xaes: &Xaes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let mut buf = plaintext.to_vec();
    let tag = xaes.seal_in_place_detached(nonce, aad, &mut buf)?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// The plaintext of `ciphertext || tag`, through the in-place API.
fn open(
    xaes: &Xaes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let mut buf = ciphertext.to_vec();
    let len = xaes.open_in_place(nonce, aad, &mut buf)?.len();
    buf.truncate(len);
    Ok(buf)
}

fn file() -> File {
    serde_json::from_str(include_str!("vectors/xaes-256-gcm.json")).unwrap()
}

fn cipher(key_hex: &str) -> Xaes256Gcm {
    Xaes256Gcm::new(&SecretBytes32::from_slice(&hex::decode(key_hex).unwrap()).unwrap())
}

#[test]
fn spec_vectors() {
    let vectors = file().vectors;
    assert_eq!(vectors.iter().filter(|v| v.expect == "ok").count(), 2);
    for v in &vectors {
        let xaes = cipher(&v.key);
        let nonce: &[u8; NONCE_LEN] = v.nonce_text.as_bytes().try_into().unwrap();
        let aad = v.aad_text.as_bytes();
        let ciphertext = hex::decode(&v.ciphertext).unwrap();
        let opened = open(&xaes, nonce, aad, &ciphertext);
        match v.expect.as_str() {
            "ok" => {
                assert_eq!(
                    seal(&xaes, nonce, aad, v.plaintext_text.as_bytes()).unwrap(),
                    ciphertext,
                    "{}",
                    v.name
                );
                assert_eq!(opened.unwrap(), v.plaintext_text.as_bytes(), "{}", v.name);
            }
            "tampered" | "wrong_key" | "wrong_aad" | "truncated" => {
                assert!(opened.is_err(), "{} must not open", v.name)
            }
            other => panic!("{}: unknown expectation {other}", v.name),
        }
    }
}

/// The specification's accumulated test: SHAKE-128 of nothing is the source of keys,
/// nonces, plaintexts and AADs; every ciphertext is absorbed into a second SHAKE-128,
/// whose first 32 bytes of output are the expected digest.
#[test]
fn spec_accumulated_vector() {
    for acc in file().accumulated {
        let mut source = Shake128::default().finalize_xof();
        let mut sink = Shake128::default();
        let mut read = |n: usize| {
            let mut buf = vec![0u8; n];
            source.read(&mut buf);
            buf
        };
        for _ in 0..acc.iterations {
            let key = SecretBytes32::from_slice(&read(32)).unwrap();
            let nonce: [u8; NONCE_LEN] = read(NONCE_LEN).try_into().unwrap();
            let plaintext_len = read(1)[0] as usize;
            let plaintext = read(plaintext_len);
            let aad_len = read(1)[0] as usize;
            let aad = read(aad_len);
            let xaes = Xaes256Gcm::new(&key);
            let ciphertext = seal(&xaes, &nonce, &aad, &plaintext).unwrap();
            assert_eq!(open(&xaes, &nonce, &aad, &ciphertext).unwrap(), plaintext);
            sink.update(&ciphertext);
        }
        let mut digest = [0u8; 32];
        sink.finalize_xof().read(&mut digest);
        assert_eq!(
            hex::encode(digest),
            acc.sha3_shake128_digest,
            "{} iterations",
            acc.iterations
        );
    }
}

proptest! {
    /// Our composition (RustCrypto `aes` for the derivation, `ring` for GCM) gives the same
    /// bytes as RustCrypto's all-in-one XAES-256-GCM, and each opens the other's output.
    #[test]
    fn agrees_with_rustcrypto_xaes(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        use xaes_256_gcm::aead::{Aead, KeyInit, Payload};
        let ours = seal(&Xaes256Gcm::new(&SecretBytes32::new(key)), &nonce, &aad, &plaintext).unwrap();
        let reference = xaes_256_gcm::Xaes256Gcm::new(&key.into());
        let theirs = reference
            .encrypt(&nonce.into(), Payload { msg: &plaintext, aad: &aad })
            .unwrap();
        prop_assert_eq!(&ours, &theirs);
        let back = open(&Xaes256Gcm::new(&SecretBytes32::new(key)), &nonce, &aad, &theirs).unwrap();
        prop_assert_eq!(back, plaintext);
    }
}

#[test]
fn debug_prints_no_key_material() {
    let xaes = Xaes256Gcm::new(&SecretBytes32::new([0x42; 32]));
    assert_eq!(format!("{xaes:?}"), "Xaes256Gcm { .. }");
}
