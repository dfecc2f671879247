//! FORMAT.md's vectors, written by `vectors/generate.py` (an independent Python
//! implementation): every one decodes as labelled, and the "ok" ones re-seal to the
//! same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::sync::Arc;

use common::{HexPayload, key32};
use serde::Deserialize;
use tcodec::keys::{KeyId, KeyState, MemoryKeyring};
use tcodec::wire::{self, Header};
use tcodec::xaes::Xaes256Gcm;
use tcodec::{Codec, CodecOptions, Payload};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    expect: String,
    error: Option<String>,
    keyring: Vec<KeyEntry>,
    max_decoded_size: usize,
    key_id: String,
    key: String,
    nonce: String,
    inner: HexPayload,
    inner_serialized: String,
    zstd: bool,
    layers: usize,
    plaintext: String,
    payload: HexPayload,
}

#[derive(Deserialize)]
struct KeyEntry {
    id: String,
    key: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str::<File>(include_str!("vectors/format-v1.json"))
        .unwrap()
        .vectors
}

/// The harness of vectors/README.md: a keyring of exactly the vector's
/// `keyring` entries, and its `max_decoded_size`.
fn codec_for(v: &Vector) -> Codec {
    let mut ring = MemoryKeyring::new();
    for (i, entry) in v.keyring.iter().enumerate() {
        let state = if i == 0 {
            KeyState::Primary
        } else {
            KeyState::Retired
        };
        ring.insert(KeyId::new(&entry.id).unwrap(), key32(&entry.key), state);
    }
    Codec::with_options(
        Arc::new(ring),
        CodecOptions::default().with_max_decoded_size(v.max_decoded_size),
    )
}

#[test]
fn every_vector_decodes_as_labelled() {
    let vectors = vectors();
    assert!(vectors.len() >= 60);
    let mut classes = std::collections::BTreeSet::new();
    for v in &vectors {
        let payload = v.payload.to_payload();
        let codec = codec_for(v);
        let result = codec.decode(std::slice::from_ref(&payload));
        // The codec server's path (parts and an in-place buffer) agrees.
        let in_place = common::decode_in_place(&codec, std::slice::from_ref(&payload));
        match (&v.error, result, in_place) {
            (None, Ok(out), Ok(again)) => {
                assert_eq!(out, [v.inner.to_payload()], "{}", v.name);
                assert_eq!(again, out, "{}", v.name);
            }
            (Some(class), Err(e), Err(again)) => {
                assert_eq!(e.class(), class, "{}: {e}", v.name);
                assert_eq!(again.class(), class, "{}: {again}", v.name);
                assert_eq!(e.index(), Some(0), "{}", v.name);
                classes.insert(class.clone());
            }
            (want, got, again) => {
                panic!("{}: expected {want:?}, got {got:?} / {again:?}", v.name)
            }
        }
    }
    // Every class a decoder must tell apart has a vector.
    let expected: std::collections::BTreeSet<String> = [
        "truncated",
        "unsupported_version",
        "unsupported_algorithm",
        "unknown_flags",
        "invalid_key_id",
        "external_payloads",
        "unexpected_metadata",
        "key_id_mismatch",
        "unknown_key",
        "decrypt",
        "compression",
        "too_large",
        "inner_payload",
        "too_deep",
    ]
    .map(String::from)
    .into();
    assert_eq!(classes, expected);
}

#[test]
fn the_scenario_labels_still_say_what_each_vector_is() {
    for v in vectors() {
        let class = v.error.as_deref();
        let fits = match v.expect.as_str() {
            "ok" => class.is_none(),
            "tampered" | "wrong_key" | "wrong_aad" => class == Some("decrypt"),
            "malformed" => class.is_some_and(|c| {
                !["decrypt", "truncated", "unsupported_version", "unknown_key"].contains(&c)
            }),
            other => class == Some(other),
        };
        assert!(fits, "{}: expect {} with error {class:?}", v.name, v.expect);
    }
}

#[test]
fn ok_vectors_reseal_to_the_same_bytes() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v.error.is_none()) {
        let inner = v.inner.to_payload();
        assert_eq!(
            prost::Message::encode_to_vec(&inner),
            hex::decode(&v.inner_serialized).unwrap(),
            "{}: inner serialization",
            v.name
        );
        let key_id = KeyId::new(&v.key_id).unwrap();
        let nonce: [u8; 24] = hex::decode(&v.nonce).unwrap().try_into().unwrap();
        let cipher = Xaes256Gcm::new(&key32(&v.key));
        let seal = |zstd: bool, plaintext: &[u8]| {
            let header = Header {
                key_id: key_id.clone(),
                zstd,
            };
            wire::seal(&cipher, &header, &nonce, plaintext).unwrap()
        };
        let mut data = seal(v.zstd, &hex::decode(&v.plaintext).unwrap());
        for _ in 1..v.layers {
            let mut outer = Payload::new(wire::ENCODING, data);
            outer
                .metadata
                .insert(wire::METADATA_KEY_ID.into(), v.key_id.clone().into_bytes());
            data = seal(false, &prost::Message::encode_to_vec(&outer));
        }
        assert_eq!(hex::encode(data), v.payload.data, "{}", v.name);
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
}
