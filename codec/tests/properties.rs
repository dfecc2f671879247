//! Properties of the codec: round trips, tamper detection, pass-through,
//! compression decisions, limits and error hygiene.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use prost::Message;
use tcodec::keys::{KeyError, KeyId, KeyState, MemoryKeyring, SecretBytes32, Transition};
use tcodec::wire::{self, Header};
use tcodec::xaes::Xaes256Gcm;
use tcodec::{
    Codec, CodecError, CodecOptions, Compression, DecodePolicy, ExternalPayloadDetails, Malformed,
    Payload,
};

const KEY: [u8; 32] = [0x11; 32];

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn keyring() -> MemoryKeyring {
    MemoryKeyring::with_primary(id("k1"), SecretBytes32::new(KEY))
}

/// What a codec server in a migration decodes: plaintext shown as it is, both
/// legacy formats decoded. (Workers refuse plaintext by default:
/// `tests/policy.rs`.)
fn lenient() -> CodecOptions {
    let policy = DecodePolicy::display()
        .allow_legacy_encrypted()
        .allow_zlib();
    CodecOptions::default().with_decode_policy(policy)
}

fn codec_with(compression: Compression) -> Codec {
    Codec::with_options(Arc::new(keyring()), lenient().with_compression(compression))
}

fn codec() -> Codec {
    codec_with(Compression::default())
}

fn json(text: &str) -> Payload {
    Payload::new("json/plain", text.as_bytes().to_vec())
}

/// `payload` with a copy of its data that shares no buffer.
fn unshared(payload: &Payload) -> Payload {
    Payload {
        data: payload.data.to_vec().into(),
        ..payload.clone()
    }
}

/// `payload` with `mask` XORed into its data's byte `index`.
fn flip(payload: &mut Payload, index: usize, mask: u8) {
    let mut data = payload.data.to_vec();
    data[index] ^= mask;
    payload.data = data.into();
}

/// `payload` serialized with its metadata entries last key first (prost
/// writes them in key order), then data, then external payload details.
fn metadata_reversed(payload: &Payload) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in payload.metadata.iter().rev() {
        let one: BTreeMap<String, Vec<u8>> = [(key.clone(), value.clone())].into();
        Payload {
            metadata: one,
            data: Default::default(),
            external_payloads: Vec::new(),
        }
        .encode(&mut out)
        .unwrap();
    }
    Payload {
        metadata: BTreeMap::new(),
        ..payload.clone()
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    (
        proptest::collection::btree_map(
            "[a-zA-Z-]{1,16}",
            proptest::collection::vec(any::<u8>(), 0..32),
            0..4,
        ),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // Repetitive data, so that compression kicks in.
            ("[a-z ]{1,12}", 1usize..400).prop_map(|(s, n)| s.repeat(n).into_bytes()),
        ],
        proptest::collection::vec(any::<i64>(), 0..2),
    )
        .prop_map(|(metadata, data, sizes)| Payload {
            metadata,
            data: data.into(),
            external_payloads: sizes
                .into_iter()
                .map(|size_bytes| ExternalPayloadDetails { size_bytes })
                .collect(),
        })
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::Off),
        (1i32..6, 0usize..600).prop_map(|(level, min_size)| Compression::Zstd { level, min_size }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn decode_inverts_encode(batch in proptest::collection::vec(arb_payload(), 0..6), compression in arb_compression()) {
        let codec = codec_with(compression);
        let encoded = codec.encode(&batch).unwrap();
        prop_assert_eq!(encoded.len(), batch.len());
        for p in &encoded {
            prop_assert_eq!(p.encoding(), Some(wire::ENCODING.as_bytes()));
            prop_assert!(p.external_payloads.is_empty());
        }
        prop_assert_eq!(&codec.decode(&encoded).unwrap(), &batch);
        // Handed over with buffers nothing else shares, payloads are decrypted
        // in place; with shared buffers (`encoded` still holds them) they are
        // copied first. Both answer as `decode` does, foreign payloads included.
        let mut mixed: Vec<Payload> = encoded.iter().map(unshared).collect();
        mixed.push(json("\"plain\""));
        let mut expected = batch.clone();
        expected.push(json("\"plain\""));
        prop_assert_eq!(codec.decode_owned(mixed.clone()).unwrap(), expected.clone());
        prop_assert_eq!(codec.decode_owned(encoded.clone()).unwrap(), batch.clone());
        // From parts, decrypted in the caller's buffer: the same answers.
        prop_assert_eq!(common::decode_in_place(&codec, &mixed).unwrap(), expected);
        // Sealed twice, the inner layer is the codec's too.
        let twice = codec.encode(&encoded).unwrap();
        prop_assert_eq!(common::decode_in_place(&codec, &twice).unwrap(), batch);
    }

    /// Serialized payloads (as a binding holds them) sealed as they are read
    /// back as the payloads they serialize, whether the in-place reader takes
    /// their shape or prost reads them; so do the same bytes with their
    /// metadata entries in another order than prost's.
    #[test]
    fn decode_inverts_encode_serialized(batch in proptest::collection::vec(arb_payload(), 0..6), compression in arb_compression()) {
        let codec = codec_with(compression);
        let serialized: Vec<Vec<u8>> = batch.iter().map(Message::encode_to_vec).collect();
        let borrowed: Vec<&[u8]> = serialized.iter().map(Vec::as_slice).collect();
        let encoded = codec.encode_serialized(&borrowed).unwrap();
        prop_assert_eq!(encoded.len(), batch.len());
        prop_assert!(encoded.iter().all(|p| p.encoding() == Some(wire::ENCODING.as_bytes())));
        prop_assert_eq!(&codec.decode(&encoded).unwrap(), &batch);
        let reversed: Vec<Vec<u8>> = batch.iter().map(metadata_reversed).collect();
        let borrowed: Vec<&[u8]> = reversed.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(codec.decode(&codec.encode_serialized(&borrowed).unwrap()).unwrap(), batch);
    }

    /// The in-place reader of decrypted payloads answers only when `prost`
    /// would, and then with `prost`'s payload; it reads every payload of the
    /// shape SDKs write.
    #[test]
    fn payload_views_agree_with_prost(payload in arb_payload(), noise in proptest::collection::vec(any::<u8>(), 0..40), at in any::<prop::sample::Index>()) {
        use prost::Message;
        let bytes = payload.encode_to_vec();
        let view = tcodec::PayloadView::parse(&bytes);
        if payload.external_payloads.is_empty() {
            prop_assert_eq!(view.expect("SDK shape").to_payload(), payload);
        } else {
            prop_assert!(view.is_none());
        }
        // Garbage spliced in anywhere: whatever the view says, prost says too.
        let mut spliced = bytes.clone();
        let at = at.index(bytes.len() + 1);
        spliced.splice(at..at, noise.iter().copied());
        for candidate in [&spliced[..], &noise[..], &bytes[..at]] {
            if let Some(view) = tcodec::PayloadView::parse(candidate) {
                prop_assert_eq!(Payload::decode(candidate).expect("prost accepts what the view reads"), view.to_payload());
            }
        }
    }

    #[test]
    fn any_flipped_bit_fails(payload in arb_payload(), compression in arb_compression(), bit in any::<prop::sample::Index>()) {
        let codec = codec_with(compression);
        let mut encoded = codec.encode(std::slice::from_ref(&payload)).unwrap().remove(0);
        let bit = bit.index(encoded.data.len() * 8);
        flip(&mut encoded, bit / 8, 1 << (bit % 8));
        prop_assert!(codec.decode(&[encoded]).is_err());
    }

    #[test]
    fn any_changed_metadata_fails(payload in arb_payload(), which in 0usize..2, value in proptest::collection::vec(any::<u8>(), 0..20)) {
        let codec = codec();
        let original = codec.encode(std::slice::from_ref(&payload)).unwrap().remove(0);
        let key = [wire::METADATA_ENCODING, wire::METADATA_KEY_ID][which];
        prop_assume!(original.metadata[key] != value);
        let mut tampered = original.clone();
        tampered.metadata.insert(key.to_owned(), value);
        match codec.decode(std::slice::from_ref(&tampered)) {
            Err(_) => {}
            // A changed `encoding` makes the payload someone else's: it passes
            // through untouched, still sealed, and never as plaintext.
            Ok(out) => {
                prop_assert_eq!(key, wire::METADATA_ENCODING);
                prop_assert_eq!(&out, &vec![tampered]);
            }
        }
    }

    #[test]
    fn foreign_payloads_pass_through(payload in arb_payload()) {
        prop_assume!(!matches!(payload.encoding(), Some(b"binary/tcodec" | b"binary/encrypted" | b"binary/zlib")));
        let codec = codec();
        // What the codec server relies on to keep such payloads as JSON.
        prop_assert!(!codec.decodes(payload.encoding()));
        prop_assert_eq!(codec.decode(std::slice::from_ref(&payload)).unwrap(), vec![payload]);
    }

    #[test]
    fn decodes_says_yes_to_every_encoded_payload(payload in arb_payload()) {
        let codec = codec();
        let encoded = codec.encode(std::slice::from_ref(&payload)).unwrap().remove(0);
        prop_assert!(codec.decodes(encoded.encoding()));
    }
}

#[test]
fn every_single_bit_flip_of_a_small_payload_fails() {
    let codec = codec();
    let encoded = codec
        .encode(&[json(r#"{"ssn":"078-05-1120"}"#)])
        .unwrap()
        .remove(0);
    for bit in 0..encoded.data.len() * 8 {
        let mut tampered = encoded.clone();
        flip(&mut tampered, bit / 8, 1 << (bit % 8));
        assert!(
            codec.decode(&[tampered]).is_err(),
            "bit {bit} flip went unnoticed"
        );
    }
}

#[test]
fn truncation_at_every_length_fails() {
    let codec = codec();
    let encoded = codec
        .encode(&[json(r#"{"ssn":"078-05-1120"}"#)])
        .unwrap()
        .remove(0);
    for len in 0..encoded.data.len() {
        let mut cut = encoded.clone();
        cut.data.truncate(len);
        assert!(
            codec.decode(&[cut]).is_err(),
            "truncated to {len} bytes decoded"
        );
    }
}

#[test]
fn metadata_added_or_removed_fails() {
    let codec = codec();
    let encoded = codec.encode(&[json("{}")]).unwrap().remove(0);
    let mut added = encoded.clone();
    added.metadata.insert("extra".into(), b"x".to_vec());
    let mut removed = encoded.clone();
    removed.metadata.remove(wire::METADATA_KEY_ID);
    let mut external = encoded.clone();
    external
        .external_payloads
        .push(ExternalPayloadDetails { size_bytes: 10 });
    for (payload, reason) in [
        (added, Malformed::UnexpectedMetadata),
        (removed, Malformed::KeyIdMismatch),
        (external, Malformed::ExternalPayloads),
    ] {
        match codec.decode(&[payload]) {
            Err(CodecError::Malformed {
                index: 0,
                reason: got,
                ..
            }) => assert_eq!(got, reason),
            other => panic!("expected {reason:?}, got {other:?}"),
        }
    }
}

#[test]
fn nonces_are_fresh() {
    let codec = codec();
    let p = json(r#"{"a":1}"#);
    let a = codec.encode(&[p.clone(), p.clone()]).unwrap();
    let b = codec.encode(std::slice::from_ref(&p)).unwrap();
    assert_ne!(a[0].data, a[1].data);
    assert_ne!(a[0].data, b[0].data);
    // Every nonce differs, across batches small (drawn on the stack) and
    // large (drawn on the heap).
    let mut nonces = std::collections::HashSet::new();
    for n in [1, 8, 9, 40] {
        for sealed in codec.encode(&vec![p.clone(); n]).unwrap() {
            let (_, header_len) = Header::parse(&sealed.data).unwrap();
            let nonce = sealed.data[header_len..header_len + 24].to_vec();
            assert_ne!(nonce, [0; 24]);
            assert!(nonces.insert(nonce), "a nonce repeated");
        }
    }
    assert_eq!(nonces.len(), 1 + 8 + 9 + 40);
}

#[test]
fn an_encoder_seals_as_encode_does_with_fresh_nonces() {
    let codec = codec();
    let inputs: Vec<Payload> = (0..150).map(|i| json(&format!("{{\"n\":{i}}}"))).collect();
    let mut nonces = std::collections::HashSet::new();
    // Told the right count, told too few (it draws again as it goes), and too
    // many: every payload opens to its input, every nonce differs.
    for expected in [150, 3, 1_000] {
        let mut encoder = codec.encoder(expected).unwrap();
        let sealed: Vec<Payload> = inputs
            .iter()
            .enumerate()
            .map(|(i, p)| encoder.encode(i, p).unwrap())
            .collect();
        assert_eq!(codec.decode(&sealed).unwrap(), inputs);
        for p in &sealed {
            let (_, header_len) = Header::parse(&p.data).unwrap();
            let nonce = p.data[header_len..header_len + 24].to_vec();
            assert_ne!(nonce, [0; 24]);
            assert!(
                nonces.insert(nonce),
                "a nonce repeated (expected {expected})"
            );
        }
    }
    // No primary key, no encoder.
    let empty = Codec::new(Arc::new(MemoryKeyring::new()));
    assert!(matches!(empty.encoder(1), Err(CodecError::Key { .. })));
}

#[test]
fn compression_is_used_only_when_it_pays() {
    let flag = |p: &Payload| Header::parse(&p.data).unwrap().0.zstd;
    let compressible = json(&r#"{"address":"1 Infinite Loop"}"#.repeat(100));
    // splitmix64 output: no structure for zstd to find.
    let random: Vec<u8> = (0..500u64)
        .flat_map(|i| {
            let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect();
    let incompressible = Payload::new("binary/plain", random.clone());
    let small = json(&"a".repeat(100));

    let default = codec();
    let out = default
        .encode(&[compressible.clone(), incompressible.clone(), small.clone()])
        .unwrap();
    assert!(flag(&out[0]), "compressible payload above the threshold");
    assert!(out[0].data.len() < compressible.data.len() / 5);
    assert!(!flag(&out[1]), "incompressible payload kept uncompressed");
    assert!(!flag(&out[2]), "payload below the threshold");
    assert_eq!(
        default.decode(&out).unwrap(),
        vec![compressible.clone(), incompressible, small]
    );

    let off = codec_with(Compression::Off);
    let out = off.encode(std::slice::from_ref(&compressible)).unwrap();
    assert!(!flag(&out[0]));
    assert!(out[0].data.len() > compressible.data.len());

    // Bytes as evenly spread as random ones are sealed without trying zstd
    // (compress.rs, `looks_incompressible`): even 4 KB of random bytes
    // repeated 16 times, which zstd would shrink 16-fold, is sealed whole.
    // Data of fewer symbols (7-bit bytes) is still compressed.
    let repeated = Payload::new("binary/plain", random.repeat(16));
    let seven_bit = Payload::new(
        "binary/plain",
        random.iter().map(|b| b & 0x7f).collect::<Vec<u8>>(),
    );
    let out = default
        .encode(&[repeated.clone(), seven_bit.clone()])
        .unwrap();
    assert!(!flag(&out[0]), "random-looking bytes are not tried");
    assert!(out[0].data.len() > repeated.data.len());
    assert!(flag(&out[1]), "7-bit bytes are compressed");
    assert_eq!(default.decode(&out).unwrap(), vec![repeated, seven_bit]);
}

#[test]
fn decompression_bombs_are_refused() {
    // A validly sealed payload whose zstd plaintext expands to 8 MiB.
    let inner = Payload::new("binary/plain", vec![0u8; 8 << 20]);
    let packed = zstd::bulk::compress(&prost::Message::encode_to_vec(&inner), 19).unwrap();
    assert!(packed.len() < 4096);
    let header = Header {
        key_id: id("k1"),
        zstd: true,
    };
    let cipher = Xaes256Gcm::new(&SecretBytes32::new(KEY));
    let mut bomb = Payload::new(
        wire::ENCODING,
        wire::seal(&cipher, &header, &[7; 24], &packed).unwrap(),
    );
    bomb.metadata
        .insert(wire::METADATA_KEY_ID.into(), b"k1".to_vec());

    let limited = Codec::with_options(
        Arc::new(keyring()),
        CodecOptions::default().with_max_decoded_size(1 << 20),
    );
    match limited.decode(std::slice::from_ref(&bomb)) {
        Err(CodecError::TooLarge { index: 0, limit }) => assert_eq!(limit, 1 << 20),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(codec().decode(&[bomb]).unwrap(), vec![inner]);
}

#[test]
fn batches_are_all_or_nothing_and_name_the_failing_index() {
    let codec = codec();
    let mut batch = codec.encode(&[json("1"), json("2"), json("3")]).unwrap();
    flip(&mut batch[2], 30, 0xff);
    match codec.decode(&batch) {
        Err(CodecError::Decrypt { index, key_id }) => {
            assert_eq!((index, key_id.as_str()), (2, "k1"))
        }
        other => panic!("expected a decrypt error, got {other:?}"),
    }
    assert!(codec.encode(&[]).unwrap().is_empty());
    assert!(codec.decode(&[]).unwrap().is_empty());
}

#[test]
fn key_states_and_rotation() {
    let mut ring = keyring();
    let k1_codec = Codec::new(Arc::new(ring.clone()));
    let under_k1 = k1_codec.encode(&[json("old")]).unwrap();

    ring.insert(id("k2"), SecretBytes32::new([0x22; 32]), KeyState::Primary);
    let rotated = Codec::new(Arc::new(ring.clone()));
    let under_k2 = rotated.encode(&[json("new")]).unwrap();
    assert_eq!(under_k2[0].metadata[wire::METADATA_KEY_ID], b"k2");
    let both = [under_k1[0].clone(), under_k2[0].clone()];
    assert_eq!(
        rotated.decode(&both).unwrap(),
        vec![json("old"), json("new")]
    );

    ring.transition(&id("k1"), Transition::Disable).unwrap();
    let err = Codec::new(Arc::new(ring.clone()))
        .decode(&both)
        .unwrap_err();
    assert!(matches!(
        err,
        CodecError::Key {
            index: 0,
            source: KeyError::Disabled(_),
            ..
        }
    ));

    ring.transition(&id("k1"), Transition::Destroy).unwrap();
    let err = Codec::new(Arc::new(ring.clone()))
        .decode(&under_k1)
        .unwrap_err();
    assert!(matches!(
        err,
        CodecError::Key {
            source: KeyError::Destroyed(_),
            ..
        }
    ));

    let empty = Codec::new(Arc::new(MemoryKeyring::new()));
    assert!(matches!(
        empty.encode(&[json("x")]),
        Err(CodecError::Key {
            source: KeyError::NoPrimary,
            ..
        })
    ));
    assert!(matches!(
        empty.decode(&under_k2),
        Err(CodecError::Key {
            source: KeyError::Unknown(_),
            ..
        })
    ));
}

#[test]
fn a_different_key_under_the_same_id_is_a_decrypt_error() {
    let sealed = codec().encode(&[json("secret")]).unwrap();
    let other = Codec::new(Arc::new(MemoryKeyring::with_primary(
        id("k1"),
        SecretBytes32::new([0x99; 32]),
    )));
    assert!(matches!(
        other.decode(&sealed),
        Err(CodecError::Decrypt { index: 0, .. })
    ));
}

#[test]
fn nested_encodings_decode_up_to_the_limit() {
    let codec = codec();
    let mut layers = vec![json("deep")];
    for _ in 0..tcodec::MAX_LAYERS {
        layers = codec.encode(&layers).unwrap();
    }
    assert_eq!(codec.decode(&layers).unwrap(), vec![json("deep")]);
    let deeper = codec.encode(&layers).unwrap();
    assert!(matches!(
        codec.decode(&deeper),
        Err(CodecError::Malformed {
            reason: Malformed::TooDeep,
            ..
        })
    ));
}

#[test]
fn errors_and_debug_output_hold_no_secrets() {
    let secret_text = "4111-1111-1111-1111 Ada Lovelace";
    let plain = json(secret_text);
    let sealed = codec().encode(std::slice::from_ref(&plain)).unwrap();
    let mut wrong = MemoryKeyring::with_primary(id("k1"), SecretBytes32::new([0x99; 32]));
    wrong.insert(id("k0"), SecretBytes32::new(KEY), KeyState::Disabled);

    let mut tampered = sealed.clone();
    flip(&mut tampered[0], 10, 1);
    let errors = [
        Codec::new(Arc::new(wrong.clone()))
            .decode(&sealed)
            .unwrap_err(),
        codec().decode(&tampered).unwrap_err(),
    ];
    let key_hex = hex::encode(KEY);
    for err in &errors {
        let mut texts = vec![err.to_string(), format!("{err:?}"), format!("{err:#?}")];
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            texts.push(s.to_string());
            source = s.source();
        }
        for text in texts {
            assert!(
                !text.contains("4111") && !text.contains("Lovelace"),
                "{text}"
            );
            assert!(
                !text.contains(&key_hex) && !text.contains("17, 17, 17"),
                "{text}"
            );
        }
    }
    let debug = format!("{:?} {:?} {:?}", plain, sealed, Codec::new(Arc::new(wrong)));
    assert!(
        !debug.contains("4111") && !debug.contains("17, 17") && !debug.contains("153, 153"),
        "{debug}"
    );
    assert!(debug.contains("data_len"));
}

#[test]
fn metadata_is_sealed_with_the_data() {
    // The inner payload's metadata is encrypted too: nothing of it shows outside.
    let mut secret = json("{}");
    secret
        .metadata
        .insert("customer-email".into(), b"ada@example.com".to_vec());
    let sealed = codec().encode(&[secret.clone()]).unwrap().remove(0);
    let outer: BTreeMap<_, _> = sealed.metadata.keys().cloned().map(|k| (k, ())).collect();
    assert_eq!(outer.len(), 2);
    assert!(
        !sealed
            .data
            .windows(5)
            .any(|w| w == b"ada@e" || w == b"custo")
    );
    assert_eq!(codec().decode(&[sealed]).unwrap(), vec![secret]);
}

#[test]
fn the_decoder_reads_sdk_payloads_where_they_were_decrypted() {
    let codec = codec_with(Compression::Off);
    let plain = json("{\"card\":\"4111 1111 1111 1111\"}");
    let sealed = codec
        .encode(std::slice::from_ref(&plain))
        .unwrap()
        .remove(0);
    let metadata = common::pairs(&sealed);
    let parts = tcodec::PayloadParts {
        metadata: &metadata,
        external_payloads: &[],
    };
    let mut data = sealed.data.to_vec();
    let region = data.as_ptr_range();
    let mut decoder = codec.decoder();
    match decoder.decode_in_place(0, parts, &mut data).unwrap() {
        tcodec::Decoded::View(view) => {
            assert!(region.contains(&view.data().as_ptr()), "not in place");
            assert_eq!(view.to_payload(), plain);
        }
        tcodec::Decoded::Owned(p) => panic!("took the general path: {p:?}"),
    }
    // A wrong key id in the metadata is refused before any decryption.
    let wrong: Vec<(&str, &[u8])> = vec![
        (wire::METADATA_ENCODING, wire::ENCODING.as_bytes()),
        (wire::METADATA_KEY_ID, b"k2"),
    ];
    let parts = tcodec::PayloadParts {
        metadata: &wrong,
        external_payloads: &[],
    };
    let mut data = sealed.data.to_vec();
    let err = decoder.decode_in_place(3, parts, &mut data).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::Malformed {
                index: 3,
                reason: Malformed::KeyIdMismatch,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn deferred_decompression_leaves_compressed_layers_undone() {
    use std::io::Write;
    let compressing = codec_with(Compression::Zstd {
        level: 3,
        min_size: 0,
    });
    let long = json(&format!("\"{}\"", "ab".repeat(500)));
    let short = json("1");
    let sealed = compressing.encode(&[short.clone(), long.clone()]).unwrap();
    assert!(sealed[1].data.len() < long.data.len(), "not compressed");
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&prost::Message::encode_to_vec(&short))
        .unwrap();
    let zlib = Payload::new("binary/zlib", zlib.finish().unwrap());

    let deferring = Codec::with_options(
        Arc::new(keyring()),
        lenient().with_deferred_decompression(true),
    );
    // What needs no decompression is answered as ever.
    assert_eq!(
        deferring.decode(&sealed[..1]).unwrap(),
        std::slice::from_ref(&short)
    );
    for (batch, index) in [(&sealed[..], 1), (std::slice::from_ref(&zlib), 0)] {
        for result in [
            deferring.decode(batch),
            common::decode_in_place(&deferring, batch),
        ] {
            let err = result.unwrap_err();
            assert!(err.is_deferred(), "{err}");
            assert_eq!(err.index(), Some(index));
        }
        // A codec that may decompress answers the same batch.
        assert!(compressing.decode(batch).is_ok());
    }
    // Refusals are not deferrals.
    let mut tampered = sealed[0].clone();
    let last = tampered.data.len() - 1;
    flip(&mut tampered, last, 1);
    assert!(!deferring.decode(&[tampered]).unwrap_err().is_deferred());
}

#[test]
fn a_payload_sealed_into_a_callers_buffer_is_what_encode_serialized_seals() {
    let flag = |p: &Payload| Header::parse(&p.data).unwrap().0.zstd;
    let mut many_keys = json("12 keys");
    for i in 0..12 {
        many_keys
            .metadata
            .insert(format!("key-{i}"), format!("value-{i}").into_bytes());
    }
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Compressed, not compressed (random-looking), below the threshold, a
    // shape read by prost rather than in place, empty.
    let shapes = [
        (json(&r#"{"address":"1 Infinite Loop"}"#.repeat(100)), true),
        (Payload::new("binary/plain", noise), false),
        (json("small"), false),
        (many_keys, false),
        (Payload::default(), false),
    ];
    for compression in [Compression::default(), Compression::Off] {
        let codec = codec_with(compression);
        let mut encoder = codec.encoder(shapes.len()).unwrap();
        for (index, (payload, compresses)) in shapes.iter().enumerate() {
            let bytes = payload.encode_to_vec();
            let prepared = encoder.prepare_serialized(index, &bytes).unwrap();
            let mut out = vec![0u8; prepared.serialized_len()];
            encoder.seal_into(prepared, &mut out).unwrap();
            let sealed = Payload::decode(&out[..]).unwrap();
            assert_eq!(sealed.metadata.len(), 2);
            assert_eq!(sealed.metadata["encoding"], b"binary/tcodec");
            assert_eq!(sealed.metadata["tcodec-key-id"], b"k1");
            let expect = *compresses && compression != Compression::Off;
            assert_eq!(flag(&sealed), expect, "payload {index}");
            assert_eq!(codec.decode(&[sealed]).unwrap(), vec![payload.clone()]);
        }
        // Not a payload; a buffer of the wrong length.
        assert!(matches!(
            encoder.prepare_serialized(7, b"\x0f\x01"),
            Err(CodecError::NotAPayload { index: 7 })
        ));
        let bytes = shapes[0].0.encode_to_vec();
        let prepared = encoder.prepare_serialized(3, &bytes).unwrap();
        let mut short = vec![0u8; prepared.serialized_len() - 1];
        assert!(matches!(
            encoder.seal_into(prepared, &mut short),
            Err(CodecError::Seal { index: 3, .. })
        ));
    }
}
