//! The decode policy: what decoding accepts besides payloads tcodec sealed.
//! Whoever stores the payloads (the Temporal server's operator) must not be
//! able to swap a sealed payload for plaintext, or for a legacy payload that
//! needs no key, and have it accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{decode_in_place, key32};
use tcodec::keys::{KeyId, LegacyKey, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecError, CodecOptions, DecodePolicy, Payload};

fn keyring() -> Arc<MemoryKeyring> {
    let mut ring =
        MemoryKeyring::with_primary(KeyId::new("k1").unwrap(), SecretBytes32::new([3; 32]));
    ring.insert_legacy(LegacyKey::new("old", key32(&"11".repeat(32))));
    Arc::new(ring)
}

fn codec(policy: DecodePolicy) -> Codec {
    Codec::with_options(
        keyring(),
        CodecOptions::default().with_decode_policy(policy),
    )
}

fn json(text: &str) -> Payload {
    Payload::new("json/plain", text.as_bytes().to_vec())
}

/// Every way to stand in for a sealed payload without the key: plaintext of
/// a common encoding, no encoding at all, and the two legacy formats.
fn stand_ins() -> Vec<Payload> {
    let mut no_encoding = json("{}");
    no_encoding.metadata.clear();
    let mut zlib = Payload::new(
        "binary/zlib",
        vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    zlib.metadata.clear();
    zlib.metadata
        .insert("encoding".into(), b"binary/zlib".to_vec());
    let mut encrypted = Payload::new("binary/encrypted", vec![0; 40]);
    encrypted
        .metadata
        .insert("encryption-key-id".into(), b"old".to_vec());
    vec![
        json("\"attacker's address\""),
        Payload::new("binary/null", Vec::new()),
        no_encoding,
        zlib,
        encrypted,
    ]
}

#[test]
fn by_default_only_tcodec_payloads_decode() {
    let strict = codec(DecodePolicy::default());
    assert_eq!(DecodePolicy::default(), DecodePolicy::strict());
    let sealed = strict.encode(&[json("\"7 Royal Crescent\"")]).unwrap();
    // What tcodec sealed decodes, its plaintext inside included.
    assert_eq!(
        strict.decode(&sealed).unwrap(),
        [json("\"7 Royal Crescent\"")]
    );
    for stand_in in stand_ins() {
        let encoding =
            String::from_utf8_lossy(stand_in.encoding().unwrap_or_default()).into_owned();
        assert!(strict.decodes(stand_in.encoding()), "{encoding}");
        // Among sealed payloads, by its index, naming its encoding.
        let batch = [sealed[0].clone(), stand_in.clone()];
        let err = strict.decode(&batch).unwrap_err();
        match &err {
            CodecError::NotSealed {
                index: 1,
                encoding: e,
            } => assert_eq!(*e, encoding),
            other => panic!("{encoding}: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("not sealed by tcodec") && text.contains("TCODEC_DECODE_ALLOW"),
            "{text}"
        );
        // The in-place decoder (the codec server's path) says the same.
        let err = decode_in_place(&strict, &batch).unwrap_err();
        assert!(
            matches!(err, CodecError::NotSealed { index: 1, .. }),
            "{err:?}"
        );
    }
}

#[test]
fn each_exception_admits_only_what_it_names() {
    let stand_ins = stand_ins();
    // What the policy makes of each stand-in: R refused, = handed back as it
    // is, D decoded (or tried: the legacy stand-ins then fail on their
    // content, which is no concern here).
    let fate = |policy: DecodePolicy| -> String {
        let c = codec(policy);
        stand_ins
            .iter()
            .map(|p| match c.decode(std::slice::from_ref(p)) {
                Err(CodecError::NotSealed { .. }) => 'R',
                Ok(out) if out == [p.clone()] => '=',
                _ => 'D',
            })
            .collect()
    };
    // json/plain, binary/null, no encoding, binary/zlib, binary/encrypted
    assert_eq!(fate(DecodePolicy::strict()), "RRRRR");
    assert_eq!(fate(DecodePolicy::strict().allow("json/plain")), "=RRRR");
    assert_eq!(fate(DecodePolicy::strict().allow("")), "RR=RR");
    assert_eq!(fate(DecodePolicy::strict().allow("binary/zlib")), "RRRDR");
    assert_eq!(
        fate(DecodePolicy::strict().allow("binary/encrypted")),
        "RRRRD"
    );
    // What a codec server shows: every payload as it is, legacy formats
    // decoded only when named.
    assert_eq!(fate(DecodePolicy::display()), "=====");
    assert_eq!(fate(DecodePolicy::strict().allow("*")), "=====");
    assert_eq!(fate(DecodePolicy::display().allow_zlib()), "===D=");
    assert!(!codec(DecodePolicy::display()).decodes(Some(b"json/plain")));
}
