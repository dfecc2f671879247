//! tcodec's decoder behind the conformance protocol of
//! `codec/tests/vectors/README.md`: one JSON request per line on stdin, one
//! JSON answer per line on stdout. Driven by `codec/tests/vectors/conformance.py`:
//!
//! ```sh
//! cargo build -p tcodec --example conformance_decoder
//! python3 codec/tests/vectors/conformance.py -- target/debug/examples/conformance_decoder
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::{Value, json};
use tcodec::keys::{KeyId, KeyState, MemoryKeyring, SecretBytes32};
use tcodec::{Codec, CodecOptions, ExternalPayloadDetails, Payload};

type Error = Box<dyn std::error::Error>;

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, Error> {
    v[field]
        .as_str()
        .ok_or_else(|| format!("request field {field:?} is not text").into())
}

fn payload_from(v: &Value) -> Result<Payload, Error> {
    let mut metadata = BTreeMap::new();
    for (k, hex_value) in v["metadata"].as_object().ok_or("no metadata object")? {
        metadata.insert(
            k.clone(),
            hex::decode(hex_value.as_str().ok_or("metadata value is not text")?)?,
        );
    }
    let external_payloads = v["external_payloads"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| ExternalPayloadDetails {
                    size_bytes: e["size_bytes"].as_i64().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Payload {
        metadata,
        data: hex::decode(text(v, "data")?)?.into(),
        external_payloads,
    })
}

fn payload_to(p: &Payload) -> Value {
    let metadata: serde_json::Map<String, Value> = p
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(hex::encode(v))))
        .collect();
    let mut out = json!({ "metadata": metadata, "data": hex::encode(&p.data) });
    if !p.external_payloads.is_empty() {
        out["external_payloads"] = p
            .external_payloads
            .iter()
            .map(|e| json!({ "size_bytes": e.size_bytes }))
            .collect();
    }
    out
}

fn answer(request: &Value) -> Result<Value, Error> {
    let mut ring = MemoryKeyring::new();
    for (i, entry) in request["keyring"]
        .as_array()
        .ok_or("no keyring array")?
        .iter()
        .enumerate()
    {
        let key = SecretBytes32::from_slice(&hex::decode(text(entry, "key")?)?)
            .ok_or("a key is not 32 bytes")?;
        let state = if i == 0 {
            KeyState::Primary
        } else {
            KeyState::Retired
        };
        ring.insert(KeyId::new(text(entry, "id")?)?, key, state);
    }
    let limit = request["max_decoded_size"]
        .as_u64()
        .ok_or("no max_decoded_size")?;
    let codec = Codec::with_options(
        Arc::new(ring),
        CodecOptions::default().with_max_decoded_size(usize::try_from(limit)?),
    );
    let payload = payload_from(&request["payload"])?;
    Ok(match codec.decode(std::slice::from_ref(&payload)) {
        Ok(decoded) => json!({ "payload": payload_to(&decoded[0]) }),
        Err(e) => json!({ "error": e.class() }),
    })
}

fn main() -> Result<(), Error> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Value = serde_json::from_str(&line)?;
        writeln!(stdout, "{}", answer(&request)?)?;
        stdout.flush()?;
    }
    Ok(())
}
