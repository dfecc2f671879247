#![doc = include_str!("../README.md")]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tcodec::Payload;

/// A small JSON record (~60 bytes), as the UI decodes them one array at a time.
pub fn record(i: usize) -> Payload {
    Payload::new(
        "json/plain",
        format!("{{\"customer\":\"c-{i}\",\"card\":\"4111 1111 1111 {i:04}\",\"amount\":{i}}}"),
    )
}

/// The `/encode` or `/decode` body the Temporal UI would send for `payloads`.
pub fn request_body(payloads: &[Payload]) -> Vec<u8> {
    let json: Vec<serde_json::Value> = payloads
        .iter()
        .map(|p| {
            let metadata: serde_json::Map<String, serde_json::Value> = p
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), STANDARD.encode(v).into()))
                .collect();
            serde_json::json!({"metadata": metadata, "data": STANDARD.encode(&p.data)})
        })
        .collect();
    serde_json::json!({ "payloads": json })
        .to_string()
        .into_bytes()
}

/// Copies of `payloads` whose data shares no buffer, for `Codec::decode_owned`
/// to decrypt in place.
pub fn unshared(payloads: &[Payload]) -> Vec<Payload> {
    payloads
        .iter()
        .map(|p| Payload {
            data: p.data.to_vec().into(),
            ..p.clone()
        })
        .collect()
}
