//! Decoding arbitrary payloads: as a stored `binary/tcodec` payload (the data
//! and the key id metadata from the input), as the legacy encodings, and as a
//! whole serialized payload. Any outcome but a panic is fine; a success must
//! only ever come from a payload that really was sealed under the key, and
//! `decode`, `decode_owned` and the `Decoder`'s in-place path must agree.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tcodec::keys::{KeyId, LegacyKey, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecOptions, DecodePolicy, Decoded, Payload, PayloadParts, PayloadView};

fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let mut keyring = MemoryKeyring::with_primary(
            KeyId::new("k1").expect("valid id"),
            SecretBytes32::new([7; 32]),
        );
        keyring.insert_legacy(LegacyKey::new("legacy", SecretBytes32::new([9; 32])));
        // Every format decoded, so every decoder is fuzzed; plaintext shown.
        let policy = DecodePolicy::display().allow_legacy_encrypted().allow_zlib();
        Codec::with_options(
            Arc::new(keyring),
            CodecOptions::default().with_decode_policy(policy),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    // The in-place reader of decrypted payloads answers only as prost does.
    if let Some(view) = PayloadView::parse(rest) {
        let parsed = <Payload as prost::Message>::decode(rest).expect("prost reads what the view reads");
        assert_eq!(view.to_payload(), parsed);
    }
    let payload = match selector % 4 {
        0 => {
            let mut p = Payload::new("binary/tcodec", rest.to_vec());
            p.metadata.insert("tcodec-key-id".into(), b"k1".to_vec());
            p
        }
        1 => {
            let mut p = Payload::new("binary/encrypted", rest.to_vec());
            p.metadata.insert("encryption-key-id".into(), b"legacy".to_vec());
            p
        }
        2 => Payload::new("binary/zlib", rest.to_vec()),
        _ => match <Payload as prost::Message>::decode(rest) {
            Ok(p) => p,
            Err(_) => return,
        },
    };
    let borrowed = codec().decode(std::slice::from_ref(&payload));
    // Handed over in a buffer of its own, it is decrypted in place: same answer.
    let owned = Payload {
        data: payload.data.to_vec().into(),
        ..payload
    };
    // From its parts, decrypted in a buffer of the caller's (the codec
    // server's path): same answer.
    let metadata: Vec<(&str, &[u8])> = owned
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let parts = PayloadParts {
        metadata: &metadata,
        external_payloads: &owned.external_payloads,
    };
    let mut data = owned.data.to_vec();
    let in_place = codec()
        .decoder()
        .decode_in_place(0, parts, &mut data)
        .map(|decoded| match decoded {
            Decoded::View(view) => vec![view.to_payload()],
            Decoded::Owned(payload) => vec![payload],
        });
    let owned = codec().decode_owned(vec![owned.clone()]);
    for (name, other) in [("decode_owned", owned), ("decode_in_place", in_place)] {
        match (&borrowed, other) {
            (Ok(a), Ok(b)) => assert_eq!(a, &b, "{name}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
            (a, b) => panic!("decode and {name} disagree: {a:?} / {b:?}"),
        }
    }
    // Sealing then opening whatever came in must round-trip.
    let plain = Payload::new("json/plain", rest.to_vec());
    let sealed = codec().encode(std::slice::from_ref(&plain)).expect("encode");
    assert_eq!(codec().decode(&sealed).expect("decode"), [plain]);
});
