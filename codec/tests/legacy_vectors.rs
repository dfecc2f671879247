//! The official samples' formats, as made by Python `cryptography` and `zlib` in
//! `vectors/generate.py`: tcodec decodes them given the old key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::sync::Arc;

use common::{HexPayload, key32};
use serde::Deserialize;
use tcodec::keys::{KeyError, LegacyKey, MemoryKeyring};
use tcodec::{Codec, CodecError, CodecOptions, DecodePolicy, Malformed};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    expect: String,
    key_id: String,
    key: String,
    payload: HexPayload,
    decoded: HexPayload,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str::<File>(include_str!("vectors/legacy.json"))
        .unwrap()
        .vectors
}

/// A codec whose decode policy allows both legacy formats (a migration).
fn migrating(ring: MemoryKeyring) -> Codec {
    let policy = DecodePolicy::strict().allow_legacy_encrypted().allow_zlib();
    Codec::with_options(
        Arc::new(ring),
        CodecOptions::default().with_decode_policy(policy),
    )
}

fn codec(v: &Vector) -> Codec {
    let mut ring = MemoryKeyring::new();
    ring.insert_legacy(LegacyKey::new(&v.key_id, key32(&v.key)));
    migrating(ring)
}

#[test]
fn legacy_payloads_decode_as_labelled() {
    let vectors = vectors();
    assert_eq!(vectors.iter().filter(|v| v.expect == "ok").count(), 3);
    for v in &vectors {
        let result = codec(v).decode(&[v.payload.to_payload()]);
        match (v.expect.as_str(), result) {
            ("ok", Ok(out)) => assert_eq!(out, vec![v.decoded.to_payload()], "{}", v.name),
            ("wrong_key" | "tampered", Err(CodecError::Decrypt { index: 0, key_id })) => {
                assert_eq!(key_id, v.key_id, "{}", v.name)
            }
            (
                "unknown_key",
                Err(CodecError::Key {
                    index: 0,
                    key_id,
                    source: KeyError::Unknown(_),
                }),
            ) => {
                assert_ne!(key_id, v.key_id, "{}", v.name)
            }
            (
                expect @ ("truncated" | "unexpected_metadata" | "missing_key_id"),
                Err(CodecError::MalformedForeign {
                    index: 0,
                    format,
                    key_id,
                    reason,
                }),
            ) => {
                let want = match expect {
                    "truncated" => Malformed::Truncated,
                    "unexpected_metadata" => Malformed::UnexpectedMetadata,
                    _ => Malformed::MissingKeyId,
                };
                assert_eq!(reason, want, "{}", v.name);
                assert_eq!(format, "samples' binary/encrypted", "{}", v.name);
                let named = if expect == "missing_key_id" {
                    ""
                } else {
                    v.key_id.as_str()
                };
                assert_eq!(key_id, named, "{}", v.name);
            }
            (expect, got) => panic!("{}: expected {expect}, got {got:?}", v.name),
        }
    }
}

#[test]
fn unknown_legacy_key_is_a_clear_error() {
    let v = &vectors()[0];
    let codec = migrating(MemoryKeyring::new());
    let err = codec.decode(&[v.payload.to_payload()]).unwrap_err();
    assert!(matches!(
        &err,
        CodecError::Key { index: 0, key_id, source: KeyError::Unknown(_) } if key_id == "test-key-id"
    ));
    assert_eq!(err.to_string(), "payload 0: cannot use key test-key-id");
}

#[test]
fn legacy_formats_are_refused_unless_the_policy_allows_them() {
    for v in vectors().iter().filter(|v| v.expect == "ok") {
        let payload = v.payload.to_payload();
        let encoding = String::from_utf8(payload.encoding().unwrap().to_vec()).unwrap();
        let mut ring = MemoryKeyring::new();
        ring.insert_legacy(LegacyKey::new(&v.key_id, key32(&v.key)));
        let ring = Arc::new(ring);
        let with = |policy| {
            Codec::with_options(
                ring.clone(),
                CodecOptions::default().with_decode_policy(policy),
            )
        };
        // The default (a worker's): refused, naming the encoding and the
        // exception that would accept it.
        let err = with(DecodePolicy::strict())
            .decode(std::slice::from_ref(&payload))
            .unwrap_err();
        assert!(
            matches!(&err, CodecError::NotSealed { index: 0, encoding: e } if *e == encoding),
            "{}: {err:?}",
            v.name
        );
        assert!(err.to_string().contains("TCODEC_DECODE_ALLOW"), "{err}");
        // A codec server showing plaintext shows it as it is, undecoded.
        assert_eq!(
            with(DecodePolicy::display())
                .decode(std::slice::from_ref(&payload))
                .unwrap(),
            std::slice::from_ref(&payload)
        );
        // Allowed by name (with zlib, for the samples' compress-then-encrypt
        // chain), it decodes.
        let codec = Codec::with_options(
            ring,
            CodecOptions::default()
                .with_decode_policy(DecodePolicy::strict().allow(&encoding).allow_zlib()),
        );
        assert_eq!(
            codec.decode(std::slice::from_ref(&payload)).unwrap(),
            vec![v.decoded.to_payload()],
            "{}",
            v.name
        );
    }
}

/// FORMAT.md section 4.5: every layer a decoder opens counts toward the 4,
/// legacy ones too.
#[test]
fn legacy_layers_count_toward_the_layer_limit() {
    let zlib = vectors()
        .into_iter()
        .find(|v| v.name == "go zlib codec")
        .unwrap();
    let mut ring = MemoryKeyring::new();
    ring.insert(
        tcodec::keys::KeyId::new("k1").unwrap(),
        key32(&zlib.key),
        tcodec::keys::KeyState::Primary,
    );
    let codec = Codec::with_options(
        Arc::new(ring),
        CodecOptions::default().with_decode_policy(DecodePolicy::strict().allow_zlib()),
    );
    let mut layers = vec![zlib.payload.to_payload()];
    // The zlib layer and three tcodec layers: four, decoded.
    for _ in 0..3 {
        layers = codec.encode(&layers).unwrap();
    }
    assert_eq!(
        codec.decode(&layers).unwrap(),
        vec![zlib.decoded.to_payload()]
    );
    // One more tcodec layer makes the zlib layer the fifth.
    let deeper = codec.encode(&layers).unwrap();
    let err = codec.decode(&deeper).unwrap_err();
    assert_eq!(err.class(), "too_deep", "{err}");
}
