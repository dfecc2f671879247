//! External Storage in a Rust worker, set up from the environment
//! (`TCODEC_STORAGE_*`) against a real S3-protocol server (moto): the
//! payload codec seals, stores what is over the threshold under a key its
//! ciphertext's SHA-256 derives and puts a reference in Temporal's shape in
//! its place, and fetches references back before opening. The environment is
//! the process's, so the worker side runs as this test binary again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../../tests/support/common.rs"]
mod common;

use std::process::Command;

use tcodec::Payload;
use tcodec_keys::kek::KekProvider as _;
use temporalio_common::data_converters::{
    PayloadCodec as _, SerializationContextData, WorkflowSerializationContext,
};
use temporalio_common::protos::temporal::api::common::v1::Payload as SdkPayload;

const CHILD: &str = "TCODEC_TEST_STORAGE_CHILD";
const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const BUCKET: &str = "worker-payloads";
const SECRET: &str = "4111 1111 1111 1111";

fn sdk(p: Payload) -> SdkPayload {
    tcodec_worker::to_sdk(p)
}

fn text_of(p: &SdkPayload) -> String {
    String::from_utf8(p.data.clone()).unwrap()
}

/// In the child: encodes a large and a small payload, prints what came out,
/// decodes them again and checks they round-trip; a second encode of the
/// same sealed bytes is not possible (new nonces), so it prints the keys.
fn child() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codec = tcodec_worker::WorkerCodec::from_env()
        .unwrap()
        .payload_codec();
    let context = SerializationContextData::Workflow(WorkflowSerializationContext::new());
    // Random tokens: compression cannot bring it under the threshold.
    let mut big = String::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while big.len() < 1 << 20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        big.push_str(&format!(
            "{{\"card\":\"{SECRET}\",\"token\":\"{seed:016x}\"}},"
        ));
    }
    let inputs = vec![
        sdk(Payload::new("json/plain", big.clone().into_bytes())),
        sdk(Payload::new(
            "json/plain",
            format!("\"{SECRET}\"").into_bytes(),
        )),
    ];
    let encoded = runtime
        .block_on(codec.encode(&context, inputs.clone()))
        .unwrap();
    for p in &encoded {
        let mut metadata: Vec<String> = p
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect();
        metadata.sort();
        println!(
            "ENCODED {} external={:?} data={}",
            metadata.join(","),
            p.external_payloads
                .iter()
                .map(|e| e.size_bytes)
                .collect::<Vec<_>>(),
            if metadata.iter().any(|m| m == "encoding=json/protobuf") {
                text_of(p)
            } else {
                "<sealed>".into()
            }
        );
    }
    let decoded = runtime
        .block_on(codec.decode(&context, encoded.clone()))
        .unwrap();
    assert_eq!(decoded, inputs, "round trip through S3");
    println!("ROUND TRIP OK");
    // A reference to another bucket is refused before any request.
    let mut elsewhere = encoded[0].clone();
    elsewhere.data = text_of(&elsewhere)
        .replace(BUCKET, "someone-elses-bucket")
        .into_bytes();
    let err = runtime
        .block_on(codec.decode(&context, vec![encoded[1].clone(), elsewhere]))
        .unwrap_err();
    println!("REFUSED {err}");
}

#[test]
fn a_worker_stores_large_sealed_payloads_in_s3_and_reads_them_back() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let dir = tempfile::tempdir().unwrap();
    let moto = common::Moto::start();
    moto.boto3(&format!("s3.create_bucket(Bucket='{BUCKET}')"));
    let master = dir.path().join("master.key");
    std::fs::write(&master, MASTER_KEY).unwrap();
    let keyring = dir.path().join("keyring.json");
    let local = tcodec_keys::kek::local::LocalKek::parse(MASTER_KEY).unwrap();
    let kek = local.kek_ref(None).unwrap();
    let keks = tcodec_keys::kek::Keks::new().with(std::sync::Arc::new(local));
    tcodec_keys::ops::init(&keyring, "payments", &keks, &kek).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_worker_stores_large_sealed_payloads_in_s3_and_reads_them_back",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("TCODEC_KEYRING", &keyring)
        .env("TCODEC_MASTER_KEY", MASTER_KEY)
        .env("TCODEC_STORAGE_BUCKET", BUCKET)
        .env("TCODEC_STORAGE_ENDPOINT", &moto.endpoint)
        .env("TCODEC_STORAGE_REGION", "us-east-1")
        .env("TEMPORAL_NAMESPACE", "payments")
        .env("TCODEC_STORAGE_THRESHOLD", "65536")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    drop(moto);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("ROUND TRIP OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ENCODED "))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    // The large payload is a reference in Temporal's shape; the small one
    // sealed inline.
    assert!(
        lines[0].starts_with(
            "ENCODED encoding=json/protobuf,messageType=temporal.api.sdk.v1.ExternalStorageReference external=["
        ),
        "{}",
        lines[0]
    );
    let reference: serde_json::Value =
        serde_json::from_str(lines[0].split_once(" data=").unwrap().1).unwrap();
    assert_eq!(reference["driverName"], "aws.s3driver");
    let claim = &reference["claimData"];
    assert_eq!(claim["bucket"], BUCKET);
    let hash = claim["hash_value"].as_str().unwrap();
    assert_eq!(claim["key"], format!("v0/ns/payments/d/sha256/{hash}"));
    assert!(lines[1].starts_with("ENCODED encoding=binary/tcodec,tcodec-key-id=k1 external=[]"));
    let refused = stdout.lines().find(|l| l.starts_with("REFUSED ")).unwrap();
    assert!(
        refused.contains(
            "payload 1: External Storage reference refused: bucket \"someone-elses-bucket\""
        ),
        "{refused}"
    );
    assert!(!stdout.contains(SECRET), "{stdout}");
}
