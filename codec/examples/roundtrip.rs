//! The codec on its own: seal a customer record, show what the Temporal server would
//! store, decode it again, and show that tampering is caught.
//!
//! `cargo run -p tcodec --example roundtrip`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use tcodec::keys::{KeyId, MemoryKeyring, SecretBytes32};
use tcodec::wire::Header;
use tcodec::{Codec, Payload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A development key. Real deployments get their keys from a keyring wrapped by KMS.
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| "the system random number generator failed")?;
    let keyring = MemoryKeyring::with_primary(KeyId::new("demo-1")?, SecretBytes32::new(key));
    let codec = Codec::new(Arc::new(keyring));

    let record = r#"{"name":"Ada Lovelace","card":"4111 1111 1111 1111","address":"12 St James's Square, London"}"#;
    let plain = vec![Payload::new("json/plain", record.as_bytes().to_vec())];
    println!("what the worker hands to the codec:");
    println!("  encoding = json/plain");
    println!("  data     = {record}\n");

    let sealed = codec.encode(&plain)?;
    let stored = &sealed[0];
    let (header, header_len) = Header::parse(&stored.data)?;
    println!("what the Temporal server stores:");
    for (k, v) in &stored.metadata {
        println!("  {k:<13} = {}", String::from_utf8_lossy(v));
    }
    println!("  data          = {} bytes:", stored.data.len());
    println!(
        "    header {}  (version 1, XAES-256-GCM, zstd={}, key {})",
        hex(&stored.data[..header_len]),
        header.zstd,
        header.key_id
    );
    println!(
        "    nonce  {}",
        hex(&stored.data[header_len..header_len + 24])
    );
    println!(
        "    sealed {}…\n",
        hex(&stored.data[header_len + 24..(header_len + 56).min(stored.data.len())])
    );
    let visible = String::from_utf8_lossy(&stored.data);
    println!(
        "  plaintext visible in stored bytes? {}\n",
        if visible.contains("Lovelace") {
            "YES"
        } else {
            "no"
        }
    );

    let decoded = codec.decode(&sealed)?;
    println!("what the codec server gives the Web UI back:");
    println!(
        "  data     = {}\n",
        String::from_utf8_lossy(&decoded[0].data)
    );
    assert_eq!(decoded, plain);

    let mut tampered = sealed.clone();
    let mut data = tampered[0].data.to_vec();
    let last = data.len() - 1;
    data[last] ^= 1;
    tampered[0].data = data.into();
    match codec.decode(&tampered) {
        Err(e) => println!("one flipped bit in storage: {e}"),
        Ok(_) => return Err("tampering went unnoticed".into()),
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
