//! Tampering an attacker with write access to the Temporal server's storage
//! might try: swapping key ids between valid payloads, splicing data and
//! metadata, altering header fields, downgrading to another encoding. Every
//! attempt must end in a clean error, never in wrong plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use tcodec::keys::{KeyId, KeyState, LegacyKey, MemoryKeyring, SecretBytes32, Transition};
use tcodec::{Codec, CodecError, CodecOptions, Compression, DecodePolicy, Payload};

const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

/// A keyring with k1 (retired) and k2 (primary), and legacy keys under the
/// same ids and bytes, so a downgrade to the legacy format has a key to try.
fn keyring() -> MemoryKeyring {
    let mut keyring = MemoryKeyring::new();
    keyring
        .insert(id("k1"), SecretBytes32::new(K1), KeyState::Retired)
        .insert(id("k2"), SecretBytes32::new(K2), KeyState::Primary)
        .insert_legacy(LegacyKey::new("k1", SecretBytes32::new(K1)))
        .insert_legacy(LegacyKey::new("k2", SecretBytes32::new(K2)));
    keyring
}

/// A codec that decodes both legacy formats, so that a downgrade to them is
/// tried for real (a worker's default refuses them outright:
/// `tests/policy.rs`).
fn codec(compression: Compression) -> Codec {
    let policy = DecodePolicy::strict().allow_legacy_encrypted().allow_zlib();
    Codec::with_options(
        Arc::new(keyring()),
        CodecOptions::default()
            .with_compression(compression)
            .with_decode_policy(policy),
    )
}

/// A valid payload sealed under `key` (k1 or k2), and its plaintext.
fn sealed_under(key: &str, text: &str, compression: Compression) -> (Payload, Payload) {
    let mut keyring = keyring();
    keyring.transition(&id(key), Transition::Promote).unwrap();
    let other = if key == "k1" { "k2" } else { "k1" };
    keyring.transition(&id(other), Transition::Retire).unwrap();
    let sealer = Codec::with_options(
        Arc::new(keyring),
        CodecOptions::default().with_compression(compression),
    );
    let plain = Payload::new("json/plain", text.as_bytes().to_vec());
    let sealed = sealer
        .encode(std::slice::from_ref(&plain))
        .unwrap()
        .remove(0);
    (sealed, plain)
}

/// `tampered` must not decode, and must not decode to anything but an error
/// in a batch beside a good payload either.
fn refused(what: &str, tampered: Payload) {
    for compression in [Compression::Off, Compression::default()] {
        let c = codec(compression);
        // Borrowed, and handed over in a buffer of its own (decrypted in place).
        let owned = Payload {
            data: tampered.data.to_vec().into(),
            ..tampered.clone()
        };
        for result in [
            c.decode(std::slice::from_ref(&tampered)),
            c.decode_owned(vec![owned]),
            common::decode_in_place(&c, std::slice::from_ref(&tampered)),
        ] {
            match result {
                Err(e) => {
                    let text = tcodec::display_chain(&e);
                    assert!(text.contains("payload 0"), "{what}: {text}");
                }
                Ok(out) => panic!("{what}: decoded to {:?}", out[0]),
            }
        }
    }
}

fn texts() -> [(String, Compression); 2] {
    let long = format!(
        "{{\"card\":\"4111 1111 1111 1111\",\"notes\":\"{}\"}}",
        "x".repeat(2000)
    );
    [
        (
            "{\"card\":\"4111 1111 1111 1111\"}".to_owned(),
            Compression::Off,
        ),
        (long, Compression::default()),
    ]
}

#[test]
fn the_originals_decode() {
    for (text, compression) in texts() {
        for key in ["k1", "k2"] {
            let (sealed, plain) = sealed_under(key, &text, compression);
            assert_eq!(codec(compression).decode(&[sealed]).unwrap(), [plain]);
        }
    }
}

#[test]
fn swapping_key_ids_between_valid_payloads_fails() {
    for (text, compression) in texts() {
        let (a, _) = sealed_under("k1", &text, compression);
        let (b, _) = sealed_under("k2", &text, compression);

        // The metadata key id alone.
        let mut swapped = a.clone();
        swapped
            .metadata
            .insert("tcodec-key-id".into(), b"k2".to_vec());
        refused("metadata key id k1 -> k2", swapped);

        // The header's key id alone (same length), and both together.
        let at = 4; // after version, algorithm, flags, key id length
        assert_eq!(&a.data[at..at + 2], b"k1");
        let header_only = with_byte(&a, at + 1, b'2');
        refused("header key id k1 -> k2", header_only.clone());
        let mut both = header_only;
        both.metadata.insert("tcodec-key-id".into(), b"k2".to_vec());
        refused("header and metadata key id k1 -> k2", both);

        // Data of one payload under the other's metadata.
        let mut spliced = b.clone();
        spliced.data = a.data.clone();
        refused("k1 data under k2 metadata", spliced);
    }
}

/// `payload` with its data's byte `at` set to `value`.
fn with_byte(payload: &Payload, at: usize, value: u8) -> Payload {
    let mut data = payload.data.to_vec();
    data[at] = value;
    Payload {
        data: data.into(),
        ..payload.clone()
    }
}

#[test]
fn altering_any_header_field_fails() {
    for (text, compression) in texts() {
        let (sealed, _) = sealed_under("k2", &text, compression);
        for (field, at, values) in [
            ("version", 0, vec![0u8, 2, 255]),
            ("algorithm", 1, vec![0, 2, 255]),
            (
                "flags",
                2,
                vec![sealed.data[2] ^ 1, sealed.data[2] ^ 2, 0x80],
            ),
            ("key id length", 3, vec![0, 1, 3, 65]),
        ] {
            for value in values {
                if value == sealed.data[at] {
                    continue;
                }
                refused(&format!("{field} = {value}"), with_byte(&sealed, at, value));
            }
        }
    }
}

#[test]
fn downgrading_to_another_encoding_fails() {
    for (text, compression) in texts() {
        let (sealed, _) = sealed_under("k1", &text, compression);

        // To the official samples' AES-GCM format, with a legacy key of the same
        // id and bytes available.
        let mut legacy = sealed.clone();
        legacy
            .metadata
            .insert("encoding".into(), b"binary/encrypted".to_vec());
        legacy
            .metadata
            .insert("encryption-key-id".into(), b"k1".to_vec());
        refused("relabelled binary/encrypted (with key id)", legacy.clone());
        legacy.metadata.remove("tcodec-key-id");
        refused("relabelled binary/encrypted", legacy);

        // To zlib.
        let mut zlib = sealed.clone();
        zlib.metadata
            .insert("encoding".into(), b"binary/zlib".to_vec());
        zlib.metadata.remove("tcodec-key-id");
        refused("relabelled binary/zlib", zlib);
    }
}

#[test]
fn a_relabelled_payload_is_refused_or_shown_as_ciphertext_never_as_plaintext() {
    // Relabelled as plaintext, a payload is refused by a worker; a codec
    // server, which shows plaintext as it is, shows the ciphertext it was,
    // never the plaintext and never anything else.
    let (text, compression) = texts()[0].clone();
    let (sealed, plain) = sealed_under("k1", &text, compression);
    let mut relabelled = sealed.clone();
    relabelled
        .metadata
        .insert("encoding".into(), b"json/plain".to_vec());
    let err = codec(compression)
        .decode(std::slice::from_ref(&relabelled))
        .unwrap_err();
    assert!(
        matches!(err, CodecError::NotSealed { index: 0, .. }),
        "{err:?}"
    );
    let display = Codec::with_options(
        Arc::new(keyring()),
        CodecOptions::default().with_decode_policy(DecodePolicy::display()),
    );
    let out = display.decode(std::slice::from_ref(&relabelled)).unwrap();
    assert_eq!(out, [relabelled]);
    assert_ne!(out[0].data, plain.data);
}
