//! The codec protocol's JSON through `process`, both directions, checked
//! against the codec itself and against an independent reading of the answer
//! (serde_json and the `base64` crate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::{
    Codec, CodecError, CodecOptions, Compression, DecodePolicy, ExternalPayloadDetails, Payload,
};
use tcodec_json::{Direction, Limits, PayloadError, ProcessError, process};

fn codec(compression: Compression) -> Codec {
    let keyring =
        MemoryKeyring::with_primary(KeyId::new("k1").unwrap(), SecretBytes32::new([5; 32]));
    // As the codec server decodes: plaintext shown as it is.
    let options = CodecOptions::default()
        .with_compression(compression)
        .with_decode_policy(DecodePolicy::display());
    Codec::with_options(Arc::new(keyring), options)
}

fn enc(text: &str) -> String {
    STANDARD.encode(text)
}

/// The JSON of `payloads` as the UI sends it, with an unknown top-level field.
fn body_of(payloads: &[Payload]) -> Vec<u8> {
    let list: Vec<Value> = payloads
        .iter()
        .map(|p| {
            let metadata: Map<String, Value> = p
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), STANDARD.encode(v).into()))
                .collect();
            let mut one = json!({"metadata": metadata, "data": STANDARD.encode(&p.data)});
            if !p.external_payloads.is_empty() {
                let sizes: Vec<Value> = p
                    .external_payloads
                    .iter()
                    .map(|e| json!({"sizeBytes": e.size_bytes.to_string()}))
                    .collect();
                one["externalPayloads"] = sizes.into();
            }
            one
        })
        .collect();
    json!({"payloads": list, "next": "t"})
        .to_string()
        .into_bytes()
}

/// An answer read back into payloads, without the code under test.
fn payloads_of(answer: &[u8]) -> Vec<Payload> {
    let answer: Value = serde_json::from_slice(answer).unwrap();
    assert_eq!(answer["next"], "t", "the top-level field is kept");
    let b64 = |v: &Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
    answer["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Payload {
            metadata: p["metadata"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), b64(v))).collect())
                .unwrap_or_default(),
            data: p.get("data").map(b64).unwrap_or_default().into(),
            external_payloads: p["externalPayloads"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|e| ExternalPayloadDetails {
                            size_bytes: e["sizeBytes"].as_str().unwrap().parse().unwrap(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

#[test]
fn passed_through_payloads_come_back_as_they_came() {
    let body = format!(
        r#"{{"payloads":[{{"metadata":{{"encoding":"{}","z":"","a":"{}"}},"data":"eyJhIjoxfQ","future":[1,2]}},{{"externalPayloads":[{{"sizeBytes":7,"other":true}}]}}],"top":{{"level":1}}}}"#,
        enc("json/plain"),
        enc("1")
    );
    let answer = process(
        &codec(Compression::Off),
        Direction::Decode,
        body.as_bytes(),
        &Limits::payloads(10),
    )
    .unwrap();
    assert_eq!(answer.payloads, 2);
    // Byte for byte, metadata order and unknown fields included.
    assert_eq!(String::from_utf8(answer.body).unwrap(), body);
}

#[test]
fn decode_answers_what_the_codec_decodes() {
    let plain = codec(Compression::Off);
    // The last is long and repetitive, so that zstd takes it.
    let records: Vec<Payload> = (0..4)
        .map(|i| {
            Payload::new(
                "json/plain",
                format!("{{\"n\":\"{}\"}}", "ab".repeat(i * 200)).into_bytes(),
            )
        })
        .collect();
    let mut protobuf = Payload::new("binary/protobuf", vec![1, 2, 3]);
    protobuf
        .metadata
        .insert("messageType".into(), b"temporal.Thing".to_vec());
    let sealed = plain.encode(&records).unwrap();
    let zstd = codec(Compression::Zstd {
        level: 3,
        min_size: 0,
    })
    .encode(&records[3..])
    .unwrap()
    .remove(0);
    assert!(zstd.data.len() < records[3].data.len(), "not compressed");
    let mixed = vec![
        sealed[0].clone(),
        records[1].clone(),
        plain
            .encode(std::slice::from_ref(&protobuf))
            .unwrap()
            .remove(0),
        // Sealed twice and compressed: the codec's general path.
        plain.encode(&sealed[2..3]).unwrap().remove(0),
        zstd,
        Payload::new("json/plain", Vec::new()),
        sealed[1].clone(),
    ];
    let answer = process(
        &plain,
        Direction::Decode,
        &body_of(&mixed),
        &Limits::payloads(100),
    )
    .unwrap();
    assert_eq!(answer.payloads, mixed.len());
    let back = payloads_of(&answer.body);
    assert_eq!(back, plain.decode(&mixed).unwrap());
    let want = [
        &records[0],
        &records[1],
        &protobuf,
        &records[2],
        &records[3],
        &mixed[5],
        &records[1],
    ];
    assert_eq!(back.iter().collect::<Vec<_>>(), want);
}

#[test]
fn encode_seals_every_payload_and_decode_opens_it() {
    let c = codec(Compression::Off);
    let mut with_external = Payload::new("json/plain", b"\"stored\"".to_vec());
    with_external.external_payloads = vec![ExternalPayloadDetails { size_bytes: 12 }];
    let inputs = vec![
        Payload::new("json/plain", b"{\"a\":1}".to_vec()),
        Payload::new("binary/null", Vec::new()),
        with_external,
    ];
    let sealed = process(
        &c,
        Direction::Encode,
        &body_of(&inputs),
        &Limits::payloads(10),
    )
    .unwrap();
    let stored = payloads_of(&sealed.body);
    assert_eq!(stored.len(), 3);
    for p in &stored {
        assert_eq!(p.encoding(), Some(&b"binary/tcodec"[..]));
    }
    // External payload details travel inside the ciphertext, and come back.
    assert!(stored[2].external_payloads.is_empty());
    assert_eq!(c.decode(&stored).unwrap(), inputs);
    let opened = process(&c, Direction::Decode, &sealed.body, &Limits::payloads(10)).unwrap();
    assert_eq!(payloads_of(&opened.body), inputs);
}

#[test]
fn escaped_strings_and_url_safe_base64_are_read() {
    let c = codec(Compression::Off);
    let body = br#"{"payloads":[{"metadata":{"enc\u006fding":"anNvbi9wbGFpbg=="},"data":"_-8"}],"next":"t"}"#;
    let sealed = process(&c, Direction::Encode, body, &Limits::payloads(10)).unwrap();
    let back = c.decode(&payloads_of(&sealed.body)).unwrap();
    assert_eq!(back, [Payload::new("json/plain", vec![0xff, 0xef])]);
}

#[test]
fn bad_base64_is_refused_in_both_directions_whether_or_not_the_codec_wants_the_payload() {
    let c = codec(Compression::Off);
    let plain = enc("json/plain");
    let sealed = process(
        &c,
        Direction::Encode,
        format!(r#"{{"payloads":[{{"metadata":{{"encoding":"{plain}"}}}}]}}"#).as_bytes(),
        &Limits::payloads(10),
    )
    .unwrap();
    let sealed: Value = serde_json::from_slice(&sealed.body).unwrap();
    let sealed = &sealed["payloads"][0];
    for direction in [Direction::Encode, Direction::Decode] {
        let run = |body: String| process(&c, direction, body.as_bytes(), &Limits::payloads(10));
        for first in [json!({"metadata": {"encoding": plain}}), sealed.clone()] {
            let mut bad_data = first.clone();
            bad_data["data"] = "%%%".into();
            match run(json!({"payloads": [first, bad_data]}).to_string()) {
                Err(ProcessError::Payload(PayloadError::Data { index: 1 })) => {}
                other => panic!("{direction}: {other:?}"),
            }
            let mut bad_meta = first.clone();
            bad_meta["metadata"]["x\n"] = "!".into();
            match run(json!({"payloads": [bad_meta]}).to_string()) {
                Err(e @ ProcessError::Payload(PayloadError::Metadata { index: 0, .. })) => {
                    assert!(!e.to_string().contains('\n'), "{e}");
                }
                other => panic!("{direction}: {other:?}"),
            }
            let mut bad_size = first.clone();
            bad_size["externalPayloads"] = json!([{"sizeBytes": "many"}]);
            match run(json!({"payloads": [bad_size]}).to_string()) {
                Err(ProcessError::Payload(PayloadError::SizeBytes { index: 0 })) => {}
                other => panic!("{direction}: {other:?}"),
            }
        }
    }
}

#[test]
fn decode_errors_name_the_first_bad_payload_in_the_request() {
    let c = codec(Compression::Off);
    let sealed = c
        .encode(&[Payload::new("json/plain", b"1".to_vec())])
        .unwrap()
        .remove(0);
    let mut tampered = sealed.clone();
    let mut data = tampered.data.to_vec();
    *data.last_mut().unwrap() ^= 1;
    tampered.data = data.into();
    let body = body_of(&[sealed.clone(), Payload::default(), tampered, sealed]);
    match process(&c, Direction::Decode, &body, &Limits::payloads(100)) {
        Err(ProcessError::Codec(CodecError::Decrypt { index: 2, .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_bodies_and_too_many_payloads_are_refused_without_quoting_values() {
    let c = codec(Compression::Off);
    for body in [
        &br#"{"payloads":"c2VjcmV0"}"#[..],
        br#"{"payloads":[{"data":["c2VjcmV0"]}]}"#,
        b"not json",
    ] {
        match process(&c, Direction::Decode, body, &Limits::payloads(10)) {
            Err(e @ ProcessError::Json(_)) => assert!(!e.to_string().contains("c2VjcmV0"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    let three = br#"{"payloads":[{},{},{}]}"#;
    match process(&c, Direction::Encode, three, &Limits::payloads(2)) {
        Err(ProcessError::TooManyPayloads { limit: 2 }) => {}
        other => panic!("{other:?}"),
    }
}

#[path = "../../cli/tests/support/zlib_bomb.rs"]
mod bomb;

/// A `binary/zlib` payload whose inner payload holds `len` zero bytes of data.
fn zlib_bomb(len: usize) -> Payload {
    Payload {
        metadata: [("encoding".to_owned(), b"binary/zlib".to_vec())].into(),
        data: bomb::zlib_bomb(2, len).into(),
        external_payloads: Vec::new(),
    }
}

fn zlib_codec() -> Codec {
    let keyring =
        MemoryKeyring::with_primary(KeyId::new("k1").unwrap(), SecretBytes32::new([5; 32]));
    let options = CodecOptions::default()
        .with_max_decoded_size(1 << 20)
        .with_decode_policy(DecodePolicy::display().allow_zlib());
    Codec::with_options(Arc::new(keyring), options)
}

#[test]
fn a_request_may_decode_only_its_budget_whatever_each_payload_may() {
    let c = zlib_codec();
    // Five payloads of 1 MiB each, the per-payload limit: each alone is fine.
    let body = body_of(&vec![zlib_bomb((1 << 20) - 8); 5]);
    assert!(body.len() < 20 << 10, "{} bytes", body.len());
    let limits = |budget| Limits {
        max_decoded_bytes: budget,
        ..Limits::payloads(10)
    };
    assert_eq!(
        process(&c, Direction::Decode, &body, &limits(5 << 20))
            .unwrap()
            .payloads,
        5
    );
    // The third would cross 2.5 MiB: refused before it is inflated.
    match process(&c, Direction::Decode, &body, &limits(5 << 19)) {
        Err(ProcessError::Codec(CodecError::OverBudget { index: 2, budget })) => {
            assert_eq!(budget, 5 << 19)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_answer_may_not_outgrow_its_budget() {
    let c = codec(Compression::Off);
    let data = "x".repeat(3000);
    let body = format!(
        r#"{{"payloads":[{0},{0},{0}]}}"#,
        format_args!(
            r#"{{"metadata":{{"encoding":"{}"}},"data":"{}"}}"#,
            enc("json/plain"),
            enc(&data)
        )
    );
    let limits = |max_answer_bytes| Limits {
        max_answer_bytes,
        ..Limits::payloads(10)
    };
    // Each sealed payload takes about 4 KiB of the answer.
    assert!(process(&c, Direction::Encode, body.as_bytes(), &limits(13_000)).is_ok());
    match process(&c, Direction::Encode, body.as_bytes(), &limits(9_000)) {
        Err(ProcessError::AnswerTooLarge { limit: 9_000 }) => {}
        other => panic!("{other:?}"),
    }
    // Passed-through payloads count too.
    match process(&c, Direction::Decode, body.as_bytes(), &limits(9_000)) {
        Err(ProcessError::AnswerTooLarge { limit: 9_000 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_parser_stops_at_the_payload_after_the_limit() {
    let c = codec(Compression::Off);
    // What follows the third payload is never read: not even its syntax.
    let body = br#"{"payloads":[{},{},{},this is not JSON"#;
    match process(&c, Direction::Decode, body, &Limits::payloads(2)) {
        Err(ProcessError::TooManyPayloads { limit: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // Within the limit, the same bytes are malformed JSON.
    assert!(matches!(
        process(&c, Direction::Decode, body, &Limits::payloads(5)),
        Err(ProcessError::Json(_))
    ));
}

#[test]
fn cancelled_work_stops_before_its_next_payload() {
    let c = codec(Compression::Off);
    let cancelled = std::sync::atomic::AtomicBool::new(true);
    let limits = Limits {
        cancelled: Some(&cancelled),
        ..Limits::payloads(10)
    };
    let body = body_of(&[Payload::default()]);
    assert!(matches!(
        process(&c, Direction::Decode, &body, &limits),
        Err(ProcessError::Cancelled { done: 0, of: 1 })
    ));
    cancelled.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(process(&c, Direction::Decode, &body, &limits).is_ok());
}
