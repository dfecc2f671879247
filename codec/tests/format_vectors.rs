//! FORMAT.md's vectors, written by `vectors/generate.py` (an independent Python
//! implementation): every one decodes as labelled, and the "ok" ones re-seal to the
//! same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::sync::Arc;

use common::{HexPayload, key32};
use serde::Deserialize;
use tcodec::keys::{KeyId, KeyState, MemoryKeyring};
use tcodec::wire::{self, Header, HeaderError};
use tcodec::xaes::Xaes256Gcm;
use tcodec::{Codec, CodecError, Malformed, Payload};

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
    nonce: String,
    inner: HexPayload,
    inner_serialized: String,
    zstd: bool,
    plaintext: String,
    payload: HexPayload,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str::<File>(include_str!("vectors/format-v1.json"))
        .unwrap()
        .vectors
}

/// A codec whose keyring holds the vector's key under its own id and under the id
/// the payload names, so that only the format's own checks can fail.
fn codec_for(v: &Vector, payload: &Payload) -> Codec {
    let mut ring = MemoryKeyring::new();
    ring.insert(
        KeyId::new(&v.key_id).unwrap(),
        key32(&v.key),
        KeyState::Primary,
    );
    if let Some(id) = payload
        .metadata
        .get(wire::METADATA_KEY_ID)
        .and_then(|id| KeyId::try_from(id.as_slice()).ok())
    {
        ring.insert(id, key32(&v.key), KeyState::Retired);
    }
    Codec::new(Arc::new(ring))
}

#[test]
fn every_vector_decodes_as_labelled() {
    let vectors = vectors();
    assert!(vectors.len() >= 10);
    for v in &vectors {
        let payload = v.payload.to_payload();
        let result = codec_for(v, &payload).decode(std::slice::from_ref(&payload));
        match (v.expect.as_str(), &result) {
            ("ok", Ok(out)) => assert_eq!(out, &[v.inner.to_payload()], "{}", v.name),
            (
                "tampered" | "wrong_key" | "wrong_aad",
                Err(CodecError::Decrypt { index: 0, key_id }),
            ) => {
                assert!(!key_id.is_empty(), "{}", v.name)
            }
            ("malformed", Err(CodecError::Malformed { reason, .. })) => assert!(
                matches!(
                    reason,
                    Malformed::KeyIdMismatch | Malformed::UnexpectedMetadata
                ),
                "{}: {reason:?}",
                v.name
            ),
            (
                "truncated",
                Err(CodecError::Malformed {
                    reason: Malformed::Header(HeaderError::Truncated),
                    ..
                }),
            ) => {}
            (
                "unsupported_version",
                Err(CodecError::Malformed {
                    reason: Malformed::Header(HeaderError::UnsupportedVersion(2)),
                    ..
                }),
            ) => {}
            (expect, got) => panic!("{}: expected {expect}, got {got:?}", v.name),
        }
    }
}

#[test]
fn ok_vectors_reseal_to_the_same_bytes() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v.expect == "ok") {
        let inner = v.inner.to_payload();
        assert_eq!(
            prost::Message::encode_to_vec(&inner),
            hex::decode(&v.inner_serialized).unwrap(),
            "{}: inner serialization",
            v.name
        );
        let header = Header {
            key_id: KeyId::new(&v.key_id).unwrap(),
            zstd: v.zstd,
        };
        let nonce: [u8; 24] = hex::decode(&v.nonce).unwrap().try_into().unwrap();
        let cipher = Xaes256Gcm::new(&key32(&v.key));
        let data = wire::seal(
            &cipher,
            &header,
            &nonce,
            &hex::decode(&v.plaintext).unwrap(),
        )
        .unwrap();
        assert_eq!(hex::encode(data), v.payload.data, "{}", v.name);
        checked += 1;
    }
    assert_eq!(checked, 3);
}
