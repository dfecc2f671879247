//! Migration through the CLI: a key of the samples' `binary/encrypted` codec
//! imported with `tcodec keys import-legacy` decodes the samples' payloads
//! (the vectors in codec/tests/vectors/legacy.json) and follows the key
//! lifecycle; temporal-proxy's payloads (temporal-proxy.json) decode through
//! a real KMS-protocol server (moto) under an allowed KEK only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use serde_json::{Value, json};
use support::{Moto, Tcodec, texts, write_private};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors(file: &str) -> Vec<Value> {
    let path = support::repo_root().join("codec/tests/vectors").join(file);
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

/// A vector's payload (hex) as the codec protocol's JSON (base64), with
/// `extra` metadata added.
fn payload_json(payload: &Value, extra: &[(&str, &[u8])]) -> Value {
    let mut metadata = serde_json::Map::new();
    for (k, v) in payload["metadata"].as_object().unwrap() {
        metadata.insert(k.clone(), json!(b64(&unhex(v.as_str().unwrap()))));
    }
    for (k, v) in extra {
        metadata.insert((*k).to_owned(), json!(b64(v)));
    }
    json!({ "metadata": metadata, "data": b64(&unhex(payload["data"].as_str().unwrap())) })
}

fn batch(payloads: &[Value]) -> String {
    json!({ "payloads": payloads }).to_string()
}

/// The decoded form of a vector's `decoded` (hex) payload's data, as text.
fn decoded_text(v: &Value) -> String {
    String::from_utf8(unhex(v["decoded"]["data"].as_str().unwrap())).unwrap()
}

/// A keyring under the local master key in `dir`.
fn local_keyring(dir: &std::path::Path) -> Tcodec {
    let mut t = Tcodec::new(dir);
    t.master_key = Some(MASTER_KEY.into());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    t
}

#[test]
fn an_imported_legacy_key_decodes_the_samples_payloads_and_follows_the_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let t = local_keyring(dir.path());
    let legacy = vectors("legacy.json");
    let ok = &legacy[0];
    assert_eq!(ok["expect"], "ok");
    let key = unhex(ok["key"].as_str().unwrap());
    let sealed = payload_json(&ok["payload"], &[]);
    let plain = json!({"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"\"first\"")});
    // The payload at index 1 is the samples' one.
    let mixed = batch(&[plain.clone(), sealed.clone()]);

    // Before the import: a clear error naming the payload and the key id.
    let err = t.fails(&["decode", "--allow", "binary/encrypted"], &mixed);
    assert!(
        err.contains("payload 1: cannot use key test-key-id") && err.contains("not in the keyring"),
        "{err}"
    );

    // The samples keep their key as 32 characters of text; a file written
    // with a final newline is taken too. A key file others can read is not.
    let key_file = dir.path().join("samples.key");
    std::fs::write(&key_file, [key.as_slice(), b"\n"].concat()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let import = ["keys", "import-legacy", "--id", "test-key-id", "--key-file"];
    let err = t.fails(&[&import[..], &[key_file.to_str().unwrap()]].concat(), "");
    assert!(err.contains("chmod 600"), "{err}");
    write_private(&key_file, &[key.as_slice(), b"\n"].concat());
    let short = dir.path().join("short.key");
    write_private(&short, &key[..31]);
    let err = t.fails(&[&import[..], &[short.to_str().unwrap()]].concat(), "");
    assert!(
        err.contains("legacy key:") && err.contains("short.key"),
        "{err}"
    );
    let out = t.ok(&[&import[..], &[key_file.to_str().unwrap()]].concat());
    assert!(out.contains("imported in keyring payments"), "{out}");

    // The keyring holds it wrapped, never in the clear; list shows it.
    let text = std::fs::read_to_string(&t.keyring).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !text.contains(&hex) && !text.contains(&b64(&key)) && !text.contains("ABCDEFGHIJKLMNOP"),
        "the legacy key is in the keyring file in the clear"
    );
    let doc = t.document();
    assert_eq!(doc["legacy_keys"][0]["id"], "test-key-id");
    assert_eq!(doc["legacy_keys"][0]["state"], "decrypt-only");
    let list = t.ok(&["keys", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("\"test-key-id\" (legacy binary/encrypted)")
                && l.contains("decrypt-only")),
        "{list}"
    );
    let listed: Value = serde_json::from_str(&t.ok(&["keys", "list", "--json"])).unwrap();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == "test-key-id"
                && k["state"] == "decrypt-only"
                && k["format"] == "binary/encrypted")
    );
    // The same id twice, or one with a control character, is refused.
    let err = t.fails(&[&import[..], &[key_file.to_str().unwrap()]].concat(), "");
    assert!(
        err.contains("already has a key called \"test-key-id\""),
        "{err}"
    );
    let err = t.fails(
        &[
            "keys",
            "import-legacy",
            "--id",
            "bad\nid",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        err.contains("legacy key id \"bad\\nid\" is invalid"),
        "{err}"
    );
    // A legacy key never encrypts.
    let err = t.fails(&["keys", "promote", "test-key-id"], "");
    assert!(err.contains("a legacy key only decrypts"), "{err}");

    // Decoded only where the decode policy allows binary/encrypted.
    let shown = t.ok_with(&["decode"], &mixed);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["payloads"][1],
        sealed
    );
    let decoded = t.ok_with(&["decode", "--allow", "binary/encrypted"], &mixed);
    assert_eq!(texts(&decoded), ["\"first\"", decoded_text(ok).as_str()]);

    // Disabled: refused, naming the payload and the key; nothing decoded.
    t.ok(&["keys", "disable", "test-key-id"]);
    let out = t.run_with(&["decode", "--allow", "binary/encrypted"], &mixed);
    assert!(!out.status.success() && out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("payload 1: cannot use key test-key-id") && err.contains("is disabled"),
        "{err}"
    );
    t.ok(&["keys", "enable", "test-key-id"]);
    assert_eq!(t.document()["legacy_keys"][0]["state"], "decrypt-only");
    let decoded = t.ok_with(&["decode", "--allow", "binary/encrypted"], &mixed);
    assert_eq!(texts(&decoded)[1], decoded_text(ok));

    // A wrapped legacy key moved to another id does not unwrap: the
    // encryption context names the id.
    let mut moved = t.document();
    moved["legacy_keys"][0]["id"] = json!("other-id");
    moved["revision"] = json!(moved["revision"].as_u64().unwrap() + 1);
    let original = std::fs::read(&t.keyring).unwrap();
    std::fs::write(&t.keyring, serde_json::to_vec_pretty(&moved).unwrap()).unwrap();
    let mut other = ok["payload"].clone();
    other["metadata"]["encryption-key-id"] = json!(hex_of(b"other-id"));
    let err = t.fails(
        &["decode", "--allow", "binary/encrypted"],
        &batch(&[payload_json(&other, &[])]),
    );
    assert!(
        err.contains("payload 0: cannot use key other-id") && err.contains("cannot unwrap"),
        "{err}"
    );
    std::fs::write(&t.keyring, original).unwrap();

    // Destroyed: the wrapped key is gone from the file.
    t.ok(&["keys", "disable", "test-key-id"]);
    t.ok(&["keys", "destroy", "--yes", "test-key-id"]);
    let doc = t.document();
    assert_eq!(doc["legacy_keys"][0]["state"], "destroyed");
    assert!(doc["legacy_keys"][0].get("wrapped_key").is_none(), "{doc}");
    let err = t.fails(&["decode", "--allow", "binary/encrypted"], &mixed);
    assert!(
        err.contains("payload 1: cannot use key test-key-id") && err.contains("destroyed"),
        "{err}"
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn legacy_payloads_with_metadata_more_or_less_are_refused_naming_index_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = local_keyring(dir.path());
    let legacy = vectors("legacy.json");
    let key_file = dir.path().join("samples.key");
    write_private(&key_file, &unhex(legacy[0]["key"].as_str().unwrap()));
    t.ok(&[
        "keys",
        "import-legacy",
        "--id",
        "test-key-id",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    for v in &legacy {
        let want = match v["expect"].as_str().unwrap() {
            "unexpected_metadata" => {
                "payload 0: malformed samples' binary/encrypted payload under key test-key-id: unexpected metadata key"
            }
            "missing_key_id" => {
                "payload 0: malformed samples' binary/encrypted payload under key : missing encryption-key-id metadata"
            }
            "truncated" => {
                "payload 0: malformed samples' binary/encrypted payload under key test-key-id: data is truncated"
            }
            _ => continue,
        };
        let err = t.fails(
            &["decode", "--allow", "binary/encrypted"],
            &batch(&[payload_json(&v["payload"], &[])]),
        );
        assert!(err.contains(want), "{}: {err}", v["name"]);
    }
}

/// Creates a KMS key; returns its ARN.
fn create_key_arn(moto: &Moto) -> String {
    moto.boto3("print(kms.create_key()['KeyMetadata']['Arn'])")
}

/// `dek` wrapped by KMS key `arn` as temporal-proxy wraps it (KMS Encrypt, no
/// encryption context), standard base64.
fn kms_wrap(moto: &Moto, arn: &str, dek: &str) -> String {
    moto.boto3(&format!(
        "import base64\nblob = kms.encrypt(KeyId='{arn}', Plaintext=bytes.fromhex('{dek}'))['CiphertextBlob']\n\
         print(base64.b64encode(blob).decode())"
    ))
}

#[test]
fn temporal_proxy_payloads_decode_through_kms_under_an_allowed_kek_only() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = local_keyring(dir.path());
    let allowed = create_key_arn(&moto);
    let other = create_key_arn(&moto);
    // The deployment lists the key by its id; the payload names it by ARN,
    // which DescribeKey of the listed entry resolves.
    t.kms_endpoint = Some(moto.endpoint.clone());
    t.kms_keys = vec![allowed.rsplit('/').next().unwrap().to_owned()];
    let uri = |arn: &str| format!("awskms:///{arn}?region=us-east-1");

    let proxy = vectors("temporal-proxy.json");
    assert_eq!(proxy.len(), 6);
    let mut seen_ok = Vec::new();
    for v in &proxy {
        let kek = if v["kek"] == "allowed" {
            &allowed
        } else {
            &other
        };
        let wrapped = kms_wrap(&moto, kek, v["dek"].as_str().unwrap());
        let payload = payload_json(
            &v["payload"],
            &[
                ("encryption-key-id", uri(kek).as_bytes()),
                ("encryption-dek", wrapped.as_bytes()),
            ],
        );
        let input = batch(std::slice::from_ref(&payload));
        let name = v["name"].as_str().unwrap();
        let key = uri(kek);
        match v["expect"].as_str().unwrap() {
            "ok" => {
                // Without binary/encrypted allowed, shown as it is.
                let shown: Value = serde_json::from_str(&t.ok_with(&["decode"], &input)).unwrap();
                assert_eq!(shown["payloads"][0], payload, "{name}");
                let out = t.ok_with(&["decode", "--allow", "binary/encrypted"], &input);
                assert_eq!(texts(&out), [decoded_text(v)], "{name}");
                seen_ok.push(payload);
            }
            expect => {
                moto.start_recording();
                let err = t.fails(&["decode", "--allow", "binary/encrypted"], &input);
                let want = match expect {
                    "tampered" | "wrong_key" => format!(
                        "payload 0: cannot decrypt under key {key}: wrong key, or the payload was altered"
                    ),
                    "unknown_kek" => format!(
                        "payload 0: cannot use key {key}: key {key} is not one this deployment may use"
                    ),
                    "truncated" => format!(
                        "payload 0: malformed temporal-proxy binary/encrypted payload under key {key}: data is truncated"
                    ),
                    "unexpected_metadata" => format!(
                        "payload 0: malformed temporal-proxy binary/encrypted payload under key {key}: unexpected metadata key"
                    ),
                    other => panic!("{name}: unlabelled expectation {other}"),
                };
                assert!(err.contains(&want), "{name}: {err}");
                if expect == "unknown_kek" {
                    // KMS never hears of a KEK the deployment did not list.
                    let decrypts: Vec<_> = moto
                        .recorded()
                        .into_iter()
                        .filter(|r| r.contains("TrentService.Decrypt"))
                        .collect();
                    assert!(decrypts.is_empty(), "{decrypts:?}");
                }
            }
        }
    }

    // A data key is unwrapped once, whatever the number of payloads under it.
    moto.start_recording();
    let many = batch(&vec![seen_ok[0].clone(); 50]);
    let out = t.ok_with(&["decode", "--allow", "binary/encrypted"], &many);
    assert_eq!(texts(&out).len(), 50);
    let decrypts = moto
        .recorded()
        .into_iter()
        .filter(|r| r.contains("TrentService.Decrypt"))
        .count();
    assert_eq!(decrypts, 1);

    // With no KMS key listed at all, nothing is asked of KMS.
    t.kms_keys.clear();
    let err = t.fails(
        &["decode", "--allow", "binary/encrypted"],
        &batch(&[seen_ok[0].clone()]),
    );
    assert!(err.contains("is not one this deployment may use"), "{err}");
}

#[test]
fn the_codec_server_decodes_temporal_proxy_payloads_where_the_namespace_allows_them() {
    use support::server::{ServeProcess, curl, curl_post};
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let t = local_keyring(dir.path());
    let allowed = create_key_arn(&moto);
    let other = create_key_arn(&moto);
    let master_file = dir.path().join("master.key");
    write_private(&master_file, MASTER_KEY.as_bytes());
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[kek]\nmaster_key_file = {:?}\nkms_endpoint = {:?}\n\
         kms_region = \"us-east-1\"\nkms_keys = [{allowed:?}]\n\
         [namespaces.payments]\nkeyring = {keyring:?}\ndecode_allow = [\"binary/encrypted\"]\n\
         [namespaces.shown]\nkeyring = {keyring:?}\n",
        master_file.display().to_string(),
        moto.endpoint,
        keyring = t.keyring.display().to_string(),
    );
    let server = ServeProcess::start(
        &toml,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let v = &vectors("temporal-proxy.json")[0];
    assert_eq!(v["expect"], "ok");
    let proxy_payload = |arn: &str| {
        let wrapped = kms_wrap(&moto, arn, v["dek"].as_str().unwrap());
        let uri = format!("awskms:///{arn}?region=us-east-1");
        payload_json(
            &v["payload"],
            &[
                ("encryption-key-id", uri.as_bytes()),
                ("encryption-dek", wrapped.as_bytes()),
            ],
        )
    };
    let good = proxy_payload(&allowed);
    let decode = |namespace: &str, payloads: &[Value]| {
        let args = curl_post(
            &format!("{}/decode", server.url),
            namespace,
            &batch(payloads),
        );
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let (status, body) = decode("payments", std::slice::from_ref(&good));
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(&body), [decoded_text(v)]);
    // A namespace without the exception shows it as it is stored.
    let (status, body) = decode("shown", std::slice::from_ref(&good));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["payloads"][0],
        good
    );
    // Under a KMS key the deployment does not list: refused, naming the
    // payload and the KEK, and nothing of the batch answered.
    let (status, body) = decode("payments", &[good.clone(), proxy_payload(&other)]);
    assert_eq!(status, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], "key_refused");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("payload 1: cannot use key awskms:///{other}"))
            && message.contains("not one this deployment may use"),
        "{message}"
    );
    assert!(!body.contains("Ada Lovelace"), "{body}");
}
