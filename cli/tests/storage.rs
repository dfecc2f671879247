//! External Storage through the codec server (a `tcodec serve` process)
//! against a real S3-protocol server (moto) on loopback: `/encode` stores
//! large sealed payloads and answers references, `/decode` fetches them (or
//! hands them back with `?preserveStorageRefs=true`), `/download` takes
//! references only; and every way a reference can be bad.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use serde_json::{Value, json};
use support::server::{ServeProcess, curl, curl_post_file};
use support::{Moto, Outage, Tcodec, write_private};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const BUCKET: &str = "tcodec-payloads";
const SECRET: &str = "4111 1111 1111 1111";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn metadata(payload: &Value, key: &str) -> String {
    String::from_utf8(unb64(payload["metadata"][key].as_str().unwrap_or(""))).unwrap()
}

/// A JSON payload of about `size` bytes: customer records, the card number
/// in each, every record different.
fn big_document(size: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            "{{\"customer\":{i},\"card\":\"{SECRET}\",\"note\":\"record {}\"}},",
            i * 7919 % 100_003
        ));
        i += 1;
    }
    out.pop();
    out.push(']');
    out
}

fn plain(text: &str) -> Value {
    json!({"metadata": {"encoding": b64(b"json/plain")}, "data": b64(text.as_bytes())})
}

struct Setup {
    moto: Moto,
    outage: Outage,
    server: ServeProcess,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Self {
        let moto = Moto::start();
        moto.boto3(&format!("s3.create_bucket(Bucket='{BUCKET}')"));
        // S3 is reached through a forwarder that can be cut: an outage.
        let outage = Outage::new(moto.endpoint.trim_start_matches("http://"));
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tcodec::new(dir.path());
        t.master_key = Some(MASTER_KEY.into());
        t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
        let master_file = dir.path().join("master.key");
        write_private(&master_file, MASTER_KEY.as_bytes());
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n[kek]\nmaster_key_file = {master:?}\n\
             [namespaces.payments]\nkeyring = {keyring:?}\n\
             [namespaces.payments.storage]\nbucket = \"{BUCKET}\"\nendpoint = {endpoint:?}\nregion = \"us-east-1\"\n\
             timeout_ms = 3000\n\
             [namespaces.plain]\nkeyring = {keyring:?}\n",
            master = master_file.display().to_string(),
            keyring = t.keyring.display().to_string(),
            endpoint = outage.url(),
        );
        let server = ServeProcess::start(
            &toml,
            &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        );
        Self {
            moto,
            outage,
            server,
            _dir: dir,
        }
    }

    /// POSTs `payloads` to `endpoint` (a path with any query) in `namespace`;
    /// the body goes through a file, as it may be megabytes.
    fn post(&self, endpoint: &str, namespace: &str, payloads: &[Value]) -> (u16, String) {
        let url = format!("{}{endpoint}", self.server.url);
        curl_post_file(
            &url,
            namespace,
            &json!({ "payloads": payloads }).to_string(),
        )
    }

    fn ok(&self, endpoint: &str, namespace: &str, payloads: &[Value]) -> Vec<Value> {
        let (status, body) = self.post(endpoint, namespace, payloads);
        assert_eq!(status, 200, "{endpoint}: {}", &body[..body.len().min(2000)]);
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["payloads"].as_array().unwrap().clone()
    }

    /// The error code and message of a failed request, which must have
    /// answered `status` and nothing of the payloads.
    fn fails(
        &self,
        endpoint: &str,
        namespace: &str,
        payloads: &[Value],
        status: u16,
    ) -> (String, String) {
        let (got, body) = self.post(endpoint, namespace, payloads);
        assert_eq!(got, status, "{endpoint}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert!(answer.get("payloads").is_none(), "{body}");
        assert!(!body.contains(SECRET), "{body}");
        (
            answer["error"]["code"].as_str().unwrap().to_owned(),
            answer["error"]["message"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs boto3 code with `s3`, a client of the moto server.
    fn s3(&self, code: &str) -> String {
        self.moto.boto3(&format!("import base64\n{code}"))
    }

    /// Every object in the bucket: key and content.
    fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let out = self.s3(&format!(
            "for o in s3.list_objects_v2(Bucket='{BUCKET}').get('Contents', []):\n    \
             body = s3.get_object(Bucket='{BUCKET}', Key=o['Key'])['Body'].read()\n    \
             print(o['Key'], base64.b64encode(body).decode())"
        ));
        out.lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap();
                (k.to_owned(), unb64(v))
            })
            .collect()
    }
}

fn reference_with(reference: &Value, claim: &[(&str, &str)]) -> Value {
    let mut message: Value =
        serde_json::from_slice(&unb64(reference["data"].as_str().unwrap())).unwrap();
    for (k, v) in claim {
        message["claimData"][*k] = json!(v);
    }
    let mut out = reference.clone();
    out["data"] = json!(b64(message.to_string().as_bytes()));
    out
}

#[test]
fn large_payloads_are_stored_sealed_and_fetched_back_only_from_the_configured_bucket() {
    let mut s = Setup::start();
    let document = big_document(5 << 20);
    let small = format!("{{\"card\":\"{SECRET}\"}}");

    // /encode: the 5 MiB payload is sealed, stored, and answered as a
    // reference in Temporal's shape; the small one stays inline.
    let encoded = s.ok("/encode", "payments", &[plain(&document), plain(&small)]);
    let reference = &encoded[0];
    assert_eq!(metadata(reference, "encoding"), "json/protobuf");
    assert_eq!(
        metadata(reference, "messageType"),
        "temporal.api.sdk.v1.ExternalStorageReference"
    );
    let message: Value =
        serde_json::from_slice(&unb64(reference["data"].as_str().unwrap())).unwrap();
    assert_eq!(message["driverName"], "aws.s3driver");
    let claim = &message["claimData"];
    assert_eq!(claim["bucket"], BUCKET);
    assert_eq!(claim["hash_algorithm"], "sha256");
    let key = claim["key"].as_str().unwrap().to_owned();
    let hash = claim["hash_value"].as_str().unwrap().to_owned();
    assert_eq!(key, format!("v0/ns/payments/d/sha256/{hash}"));
    assert_eq!(metadata(&encoded[1], "encoding"), "binary/tcodec");

    // S3 holds one object: the sealed payload, its SHA-256 the reference's,
    // its size the reference's, no plaintext in it.
    let objects = s.objects();
    assert_eq!(
        objects.len(),
        1,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    let (stored_key, object) = &objects[0];
    assert_eq!(stored_key, &key);
    let digest = ring::digest::digest(&ring::digest::SHA256, object);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, hash);
    assert_eq!(
        reference["externalPayloads"][0]["sizeBytes"],
        json!(object.len().to_string())
    );
    assert!(object.windows(13).any(|w| w == b"binary/tcodec"));
    assert!(!object.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(
        object.len() < document.len() / 4,
        "compressed before sealing"
    );

    // /decode with preserveStorageRefs: the reference comes back untouched,
    // the rest decoded.
    let preserved = s.ok("/decode?preserveStorageRefs=true", "payments", &encoded);
    assert_eq!(&preserved[0], reference);
    assert_eq!(
        unb64(preserved[1]["data"].as_str().unwrap()),
        small.as_bytes()
    );

    // /decode fetches and decodes; /download takes the reference alone.
    let decoded = s.ok("/decode", "payments", &encoded);
    assert_eq!(metadata(&decoded[0], "encoding"), "json/plain");
    assert!(decoded[0].get("externalPayloads").is_none());
    assert_eq!(
        unb64(decoded[0]["data"].as_str().unwrap()),
        document.as_bytes()
    );
    let downloaded = s.ok(
        "/download?preserveStorageRefs=true",
        "payments",
        std::slice::from_ref(reference),
    );
    assert_eq!(
        unb64(downloaded[0]["data"].as_str().unwrap()),
        document.as_bytes()
    );

    // Sealing the same payloads again stores a second object (a new nonce);
    // storing is a conditional write, so nothing is overwritten.
    let again = s.ok("/encode", "payments", &[plain(&document)]);
    assert_ne!(again[0], *reference);
    assert_eq!(s.objects().len(), 2);

    // /download: references only, naming the first payload that is not one.
    let (code, message) = s.fails(
        "/download",
        "payments",
        &[reference.clone(), encoded[1].clone()],
        400,
    );
    assert_eq!(code, "not_a_reference");
    assert!(message.starts_with("payload 1: "), "{message}");

    // A namespace with no storage: a reference is refused unless preserved.
    let (code, message) = s.fails("/decode", "plain", &encoded, 400);
    assert_eq!(code, "storage_not_configured");
    assert!(message.starts_with("payload 0: "), "{message}");
    let preserved = s.ok("/decode?preserveStorageRefs=true", "plain", &encoded);
    assert_eq!(&preserved[0], reference);

    // References elsewhere are refused before any request leaves the server:
    // moto's recorder sees nothing.
    s.moto.start_recording();
    let other_bucket = reference_with(reference, &[("bucket", "someone-elses-bucket")]);
    let (code, message) = s.fails(
        "/decode",
        "payments",
        &[encoded[1].clone(), other_bucket],
        400,
    );
    assert_eq!(code, "reference_refused");
    assert!(
        message.starts_with("payload 1: ") && message.contains("someone-elses-bucket"),
        "{message}"
    );
    let other_prefix = reference_with(
        reference,
        &[("key", &format!("v0/ns/billing/d/sha256/{hash}"))],
    );
    let (code, message) = s.fails("/download", "payments", &[other_prefix], 400);
    assert_eq!(code, "reference_refused");
    assert!(
        message.contains("not under the configured prefix"),
        "{message}"
    );
    let with_endpoint = reference_with(reference, &[("endpoint", "http://169.254.169.254")]);
    let (code, _) = s.fails("/download", "payments", &[with_endpoint], 400);
    assert_eq!(code, "malformed_reference");
    let mut other_driver = reference.clone();
    let mut m = message_of(reference);
    m["driverName"] = json!("gcs.driver");
    other_driver["data"] = json!(b64(m.to_string().as_bytes()));
    let (code, _) = s.fails("/download", "payments", &[other_driver], 400);
    assert_eq!(code, "reference_refused");
    assert_eq!(
        s.moto.recorded(),
        Vec::<String>::new(),
        "no request may reach S3"
    );
    // (The recorder does see the server's fetches.)
    s.ok("/download", "payments", std::slice::from_ref(reference));
    assert!(s.moto.recorded().iter().any(|r| r.contains(&hash)));

    // A missing object: 404, naming the payload.
    let missing_hash = "0".repeat(64);
    let missing = reference_with(
        reference,
        &[
            ("key", &format!("v0/ns/payments/d/sha256/{missing_hash}")),
            ("hash_value", &missing_hash),
        ],
    );
    let (code, message) = s.fails("/decode", "payments", &[encoded[1].clone(), missing], 404);
    assert_eq!(code, "stored_payload_missing");
    assert!(
        message.starts_with("payload 1: ") && message.contains("does not exist"),
        "{message}"
    );

    // A tampered object (one byte changed in place): refused by its hash.
    s.s3(&format!(
        "o = bytearray(s3.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read())\n\
         o[len(o) // 2] ^= 1\ns3.put_object(Bucket='{BUCKET}', Key='{key}', Body=bytes(o))"
    ));
    let (code, message) = s.fails(
        "/download",
        "payments",
        std::slice::from_ref(reference),
        400,
    );
    assert_eq!(code, "stored_payload_invalid");
    assert!(
        message.starts_with("payload 0: ") && message.contains("SHA-256"),
        "{message}"
    );

    // S3 down: 503 and no partial answer; back up, answered again.
    s.outage.cut();
    let (code, message) = s.fails(
        "/decode",
        "payments",
        &[encoded[1].clone(), again[0].clone()],
        503,
    );
    assert_eq!(code, "storage_unavailable");
    assert!(message.starts_with("payload 1: "), "{message}");
    let (code, _) = s.fails("/encode", "payments", &[plain(&document)], 503);
    assert_eq!(code, "storage_unavailable");
    s.outage.restore();
    let decoded = s.ok("/download", "payments", std::slice::from_ref(&again[0]));
    assert_eq!(
        unb64(decoded[0]["data"].as_str().unwrap()),
        document.as_bytes()
    );

    // The same reference many times is fetched once, and counted each time
    // against what one request may decode (4 × 8 MiB by default).
    let size: usize = again[0]["externalPayloads"][0]["sizeBytes"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let copies = (32 << 20) / size + 1;
    assert!(copies <= 100, "{size}");
    let (code, message) = s.fails("/decode", "payments", &vec![again[0].clone(); copies], 413);
    assert_eq!(code, "stored_payloads_too_large");
    assert!(
        message.starts_with(&format!("payload {}: ", copies - 1)),
        "{message}"
    );

    // Every fetch has its audit line and metrics.
    let log = s.server.log_text();
    assert!(
        log.lines().any(|l| l.contains("stored payload fetch")
            && l.contains(&key)
            && l.contains("namespace=payments")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.contains("stored payload fetch failed") && l.contains("storage_unavailable")));
    assert!(!log.contains(SECRET));
    let (_, metrics) = curl(&[&format!("{}/metrics", s.server.url)]);
    assert!(
        metrics.contains("tcodec_storage_operations_total{operation=\"fetch\",outcome=\"ok\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tcodec_storage_operations_total{operation=\"store\",outcome=\"ok\"} 2")
    );
    assert!(metrics.contains("tcodec_requests_total{endpoint=\"download\",code=\"200\"}"));
}

fn message_of(reference: &Value) -> Value {
    serde_json::from_slice(&unb64(reference["data"].as_str().unwrap())).unwrap()
}

/// moto with the bucket, and `tcodec` with a keyring for namespace payments
/// and moto's endpoint and AWS credentials in its environment.
fn cli_with_bucket() -> (Moto, tempfile::TempDir, Tcodec) {
    let moto = Moto::start();
    moto.boto3(&format!("s3.create_bucket(Bucket='{BUCKET}')"));
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tcodec::new(dir.path());
    t.master_key = Some(MASTER_KEY.into());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    t.kms_endpoint = Some(moto.endpoint.clone());
    (moto, dir, t)
}

/// The CLI's options for that bucket at `endpoint`, storing from 1 KiB.
fn storage_args(endpoint: &str) -> [&str; 8] {
    [
        "--storage-bucket",
        BUCKET,
        "--storage-endpoint",
        endpoint,
        "--namespace",
        "payments",
        "--storage-threshold",
        "1024",
    ]
}

#[test]
fn tcodec_encode_stores_in_the_bucket_and_tcodec_decode_fetches_from_it_only() {
    let (moto, _dir, t) = cli_with_bucket();
    let storage = storage_args(&moto.endpoint);
    let with = |command: &'static str| [&[command][..], &storage[..]].concat();
    let document = big_document(64 << 10);
    let batch = json!({"payloads": [plain(&document), plain("\"small\"")]}).to_string();

    let encoded: Value = serde_json::from_str(&t.ok_with(&with("encode"), &batch)).unwrap();
    let reference = &encoded["payloads"][0];
    assert_eq!(metadata(reference, "encoding"), "json/protobuf");
    assert_eq!(
        metadata(&encoded["payloads"][1], "encoding"),
        "binary/tcodec"
    );
    let key = message_of(reference)["claimData"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("v0/ns/payments/d/sha256/"), "{key}");
    let stored = moto.boto3(&format!(
        "print(s3.get_object(Bucket='{BUCKET}', Key='{key}')['ContentLength'])"
    ));
    assert!(stored.parse::<usize>().unwrap() > 1024);

    let decoded: Value =
        serde_json::from_str(&t.ok_with(&with("decode"), &encoded.to_string())).unwrap();
    assert_eq!(
        unb64(decoded["payloads"][0]["data"].as_str().unwrap()),
        document.as_bytes()
    );
    // A reference named three times: one request to S3, three payloads.
    moto.start_recording();
    let thrice = json!({"payloads": vec![reference.clone(); 3]}).to_string();
    let decoded: Value = serde_json::from_str(&t.ok_with(&with("decode"), &thrice)).unwrap();
    assert_eq!(decoded["payloads"].as_array().unwrap().len(), 3);
    for payload in decoded["payloads"].as_array().unwrap() {
        assert_eq!(
            unb64(payload["data"].as_str().unwrap()),
            document.as_bytes()
        );
    }
    let hash = key.rsplit('/').next().unwrap();
    let gets: Vec<String> = moto
        .recorded()
        .into_iter()
        .filter(|r| r.contains(hash))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    // Without storage, references are written back as they are.
    let kept: Value = serde_json::from_str(&t.ok_with(&["decode"], &encoded.to_string())).unwrap();
    assert_eq!(&kept["payloads"][0], reference);
    // A reference to another bucket: refused, naming the payload, nothing written.
    let elsewhere = reference_with(reference, &[("bucket", "someone-elses-bucket")]);
    let batch = json!({"payloads": [encoded["payloads"][1].clone(), elsewhere]}).to_string();
    let out = t.run_with(&with("decode"), &batch);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "payload 1: External Storage reference refused: bucket \"someone-elses-bucket\""
        ),
        "{stderr}"
    );
}

/// `tcodec history check` follows a history's references into the bucket
/// and checks what the objects hold; `tcodec history decode` decodes them.
#[test]
fn tcodec_history_checks_and_decodes_what_references_point_to() {
    let (moto, dir, t) = cli_with_bucket();
    let storage = storage_args(&moto.endpoint);
    let document = big_document(64 << 10);
    let batch = json!({"payloads": [plain(&document), plain("\"small\"")]}).to_string();
    let mut args = vec!["encode"];
    args.extend(storage);
    let encoded: Value = serde_json::from_str(&t.ok_with(&args, &batch)).unwrap();
    let reference = encoded["payloads"][0].clone();

    // An object holding a plaintext payload, stored where a worker without
    // tcodec's codec would put it: its SHA-256 is right, its content is not
    // sealed.
    let mut object = vec![0x0a, 22, 0x0a, 8];
    object.extend_from_slice(b"encoding");
    object.extend_from_slice(&[0x12, 10]);
    object.extend_from_slice(b"json/plain");
    let data = format!("{SECRET:?}");
    object.extend_from_slice(&[0x12, data.len() as u8]);
    object.extend_from_slice(data.as_bytes());
    let hash: String = ring::digest::digest(&ring::digest::SHA256, &object)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("v0/ns/payments/d/sha256/{hash}");
    let object_file = dir.path().join("object.bin");
    std::fs::write(&object_file, &object).unwrap();
    moto.boto3(&format!(
        "s3.put_object(Bucket='{BUCKET}', Key='{key}', Body=open({:?}, 'rb').read())",
        object_file.display().to_string()
    ));
    let plaintext_reference = reference_with(&reference, &[("key", &key), ("hash_value", &hash)]);

    let history = |payloads: Vec<Value>| {
        json!({"events": [{
            "eventId": "1",
            "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "workflowExecutionStartedEventAttributes": {"input": {"payloads": payloads}},
        }]})
        .to_string()
    };
    let sealed = history(vec![reference.clone(), encoded["payloads"][1].clone()]);
    let check = |extra: &[&str], input: &str| {
        let mut args = vec!["history", "check"];
        args.extend(extra);
        t.run_with(&args, input)
    };

    // Without the bucket, a reference cannot be checked: the check fails.
    let out = check(&[], &sealed);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "UNCHECKED event 1 (WORKFLOW_EXECUTION_STARTED) \
             workflowExecutionStartedEventAttributes.input.payloads[0]: an External Storage reference"
        ),
        "{stdout}"
    );
    // With it, the object is fetched and found sealed.
    let out = check(&storage, &sealed);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("in External Storage: 1 (objects checked: 1)"),
        "{stdout}"
    );
    // An object holding plaintext is found, and its content is not printed.
    let out = check(&storage, &history(vec![plaintext_reference]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "PLAINTEXT event 1 (WORKFLOW_EXECUTION_STARTED) \
             workflowExecutionStartedEventAttributes.input.payloads[0] (the stored object): \
             json/plain, not sealed"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET), "{stdout}");

    // Decoded, with the bucket: the stored document comes back in place.
    let mut args = vec!["history", "decode"];
    args.extend(storage);
    let decoded: Value = serde_json::from_str(&t.ok_with(&args, &sealed)).unwrap();
    let input = &decoded["events"][0]["workflowExecutionStartedEventAttributes"]["input"];
    assert_eq!(
        unb64(input["payloads"][0]["data"].as_str().unwrap()),
        document.as_bytes()
    );
    assert_eq!(
        unb64(input["payloads"][1]["data"].as_str().unwrap()),
        b"\"small\""
    );
    // A payload altered in the history: nothing is written, and the error
    // names where it is.
    let mut altered = encoded["payloads"][1].clone();
    let mut data = unb64(altered["data"].as_str().unwrap());
    let last = data.len() - 1;
    data[last] ^= 1;
    altered["data"] = json!(b64(&data));
    let out = t.run_with(&["history", "decode"], &history(vec![reference, altered]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cannot decode the payload at event 1 (WORKFLOW_EXECUTION_STARTED) \
             workflowExecutionStartedEventAttributes.input.payloads[1]: payload 1: cannot decrypt"
        ),
        "{stderr}"
    );
}
