//! The keyring against a real KMS-protocol server (moto on loopback): rotation,
//! states, rewrap to another KMS key, encryption context, and a KMS outage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{LineDecoder, Moto, Outage, Tcodec, key_ids, plain_batch, texts};

/// A keyring `payments` in `dir` whose first key is wrapped by a new KMS key.
fn init_under_kms(dir: &std::path::Path, moto: &Moto) -> Tcodec {
    init_under_kms_at(dir, moto, &moto.endpoint)
}

/// Like [`init_under_kms`], reaching moto's KMS at `endpoint` (a forwarder).
fn init_under_kms_at(dir: &std::path::Path, moto: &Moto, endpoint: &str) -> Tcodec {
    let key = moto.create_key();
    let mut t = Tcodec::new(dir);
    t.kms_endpoint = Some(endpoint.to_owned());
    t.kms_keys.push(key.clone());
    t.ok(&[
        "keys",
        "init",
        "--name",
        "payments",
        "--kek",
        &format!("aws-kms:{key}"),
    ]);
    t
}

#[test]
fn rotate_disable_destroy_and_rewrap_under_kms() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = init_under_kms(dir.path(), &moto);
    let key_b = moto.create_key();
    // The deployment lists both the key in use and the one it will move to.
    t.kms_keys.push(key_b.clone());
    let sealed_1 = t.ok_with(&["encode"], &plain_batch(&["one-a", "one-b"]));
    t.ok(&["keys", "rotate"]);
    let sealed_2 = t.ok_with(&["encode"], &plain_batch(&["two"]));
    t.ok(&["keys", "rotate"]);
    let sealed_3 = t.ok_with(&["encode"], &plain_batch(&["three"]));
    assert_eq!(key_ids(&sealed_1), ["k1", "k1"]);
    assert_eq!(key_ids(&sealed_2), ["k2"]);
    assert_eq!(key_ids(&sealed_3), ["k3"]);
    // The sealed payloads hold no plaintext.
    for sealed in [&sealed_1, &sealed_2, &sealed_3] {
        assert!(!sealed.contains("one-") && !sealed.contains("two") && !sealed.contains("three"));
    }

    let decode = |sealed: &str| texts(&t.ok_with(&["decode"], sealed));
    assert_eq!(decode(&sealed_1), ["one-a", "one-b"]);
    assert_eq!(decode(&sealed_2), ["two"]);
    assert_eq!(decode(&sealed_3), ["three"]);
    assert_eq!(
        t.states(),
        [("k1", "retired"), ("k2", "retired"), ("k3", "primary")]
            .map(|(a, b)| (a.into(), b.into()))
    );

    // KMS calls scale with key versions, not payloads: 300 payloads under three
    // versions cost one Decrypt each, counted in moto's request log.
    let many = t.ok_with(&["encode"], &plain_batch(&["x"; 298]));
    let mut mixed: serde_json::Value = serde_json::from_str(&many).unwrap();
    for sealed in [&sealed_1, &sealed_2] {
        let v: serde_json::Value = serde_json::from_str(sealed).unwrap();
        mixed["payloads"]
            .as_array_mut()
            .unwrap()
            .push(v["payloads"][0].clone());
    }
    let requests = || moto.log_text().matches("\"POST /").count();
    let before = requests();
    assert_eq!(decode(&mixed.to_string()).len(), 300);
    assert_eq!(
        requests() - before,
        3,
        "KMS requests for 300 payloads under 3 keys"
    );

    // Disable: refused with a clear error, reversibly.
    t.ok(&["keys", "disable", "k1"]);
    let err = t.fails(&["decode"], &sealed_1);
    assert!(
        err.contains("payload 0: cannot use key k1: key k1 is disabled"),
        "{err}"
    );
    assert_eq!(decode(&sealed_2), ["two"]);
    t.ok(&["keys", "enable", "k1"]);
    assert_eq!(decode(&sealed_1), ["one-a", "one-b"]);

    // Destroy: permanent.
    t.ok(&["keys", "disable", "k1"]);
    t.ok(&["keys", "destroy", "k1", "--yes"]);
    let err = t.fails(&["decode"], &sealed_1);
    assert!(err.contains("key k1 was destroyed"), "{err}");
    let err = t.fails(&["keys", "enable", "k1"], "");
    assert!(err.contains("a destroyed key cannot be enabled"), "{err}");
    assert!(t.document()["keys"][0].get("wrapped_dek").is_none());

    // Rewrap every live key under key B; then key A is not needed at all.
    let out = t.ok(&[
        "keys",
        "rewrap",
        "--kek",
        &format!("aws-kms:{key_b}"),
        "--json",
    ]);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["rewrapped"], serde_json::json!(["k2", "k3"]));
    for k in &t.document()["keys"].as_array().unwrap()[1..] {
        assert_eq!(k["kek"]["key"], key_b.as_str());
        // KMS itself says the wrapped key is now under key B, for this context only.
        let under = moto.boto3(&format!(
            "import base64\nprint(kms.decrypt(CiphertextBlob=base64.b64decode('{}'), \
             EncryptionContext={{'tcodec:keyring': 'payments', 'tcodec:key-id': '{}'}})['KeyId'])",
            k["wrapped_dek"].as_str().unwrap(),
            k["id"].as_str().unwrap()
        ));
        assert!(under.ends_with(&key_b), "{under}");
    }
    assert_eq!(decode(&sealed_2), ["two"]);
    assert_eq!(decode(&sealed_3), ["three"]);
    let sealed_4 = t.ok_with(&["encode"], &plain_batch(&["four"]));
    assert_eq!(decode(&sealed_4), ["four"]);
    // New keys now default to the primary's KEK, key B.
    t.ok(&["keys", "add"]);
    assert_eq!(t.document()["keys"][3]["kek"]["key"], key_b.as_str());
}

#[test]
fn a_keyring_moved_from_the_local_master_key_to_kms_needs_only_kms() {
    // Wrapping a key KMS did not make goes through `Encrypt`, whose request
    // body tcodec builds itself (and wipes): this proves KMS got the real key.
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tcodec::new(dir.path());
    t.master_key = Some(t.ok(&["keys", "new-master-key"]).trim().to_owned());
    t.kms_endpoint = Some(moto.endpoint.clone());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    let sealed = t.ok_with(&["encode"], &plain_batch(&["under the master key"]));
    let key = moto.create_key();
    // Naming the key in `--kek` allows it for the command.
    t.ok(&["keys", "rewrap", "--kek", &format!("aws-kms:{key}")]);
    assert_eq!(t.document()["keys"][0]["kek"]["key"], key.as_str());
    t.master_key = None;
    t.kms_keys.push(key);
    assert_eq!(
        texts(&t.ok_with(&["decode"], &sealed)),
        ["under the master key"]
    );
}

/// Plants key `id` in the keyring as its primary, its data key generated by
/// moto under `kms_key` with the right encryption context: what someone who
/// can write the keyring file and owns a KMS key can do.
fn plant_primary(t: &Tcodec, moto: &Moto, kms_key: &str, id: &str) {
    let wrapped = moto.boto3(&format!(
        "import base64\nr = kms.generate_data_key(KeyId='{kms_key}', KeySpec='AES_256', \
         EncryptionContext={{'tcodec:keyring': 'payments', 'tcodec:key-id': '{id}'}})\n\
         print(base64.b64encode(r['CiphertextBlob']).decode())"
    ));
    let mut doc = t.document();
    let keys = doc["keys"].as_array_mut().unwrap();
    let mut planted = keys[0].clone();
    keys[0]["state"] = "retired".into();
    planted["id"] = id.into();
    planted["state"] = "primary".into();
    planted["kek"]["key"] = kms_key.into();
    planted["wrapped_dek"] = wrapped.into();
    keys.push(planted);
    std::fs::write(&t.keyring, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn a_data_key_planted_under_an_unlisted_kms_key_is_refused_before_kms_is_called() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let t = init_under_kms(dir.path(), &moto);
    let sealed = t.ok_with(&["encode"], &plain_batch(&["before"]));
    let attackers = moto.create_key();
    plant_primary(&t, &moto, &attackers, "k2");

    moto.start_recording();
    let err = t.fails(&["encode"], &plain_batch(&["secret"]));
    assert!(
        err.contains("data key k2 is wrapped by aws-kms:")
            && err.contains("not one of the KMS keys allowed here"),
        "{err}"
    );
    // KMS was asked only about the listed key (to resolve it to its ARN),
    // never about the planted one.
    let recorded = moto.recorded();
    assert!(
        recorded.len() == 1
            && recorded[0].starts_with("TrentService.DescribeKey")
            && recorded[0].contains(&t.kms_keys[0])
            && !recorded[0].contains(&attackers),
        "{recorded:#?}"
    );
    // The keys the deployment listed still work.
    assert_eq!(texts(&t.ok_with(&["decode"], &sealed)), ["before"]);
}

#[test]
fn an_allowed_alias_admits_the_key_it_names_and_no_other() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = init_under_kms(dir.path(), &moto);
    let ours = t.kms_keys.clone();
    moto.boto3(&format!(
        "kms.create_alias(AliasName='alias/tcodec-payments', TargetKeyId='{}')",
        ours[0]
    ));
    // The deployment lists the alias; the keyring names the key id.
    t.kms_keys = vec!["alias/tcodec-payments".into()];
    let sealed = t.ok_with(&["encode"], &plain_batch(&["under our key"]));
    assert_eq!(texts(&t.ok_with(&["decode"], &sealed)), ["under our key"]);
    let attackers = moto.create_key();
    plant_primary(&t, &moto, &attackers, "k2");
    let err = t.fails(&["encode"], &plain_batch(&["secret"]));
    assert!(
        err.contains("not one of the KMS keys allowed here"),
        "{err}"
    );
    // Nothing listed: no KMS key at all.
    t.kms_keys.clear();
    let err = t.fails(&["decode"], &sealed);
    assert!(
        err.contains("data key k1") && err.contains("TCODEC_KMS_KEYS"),
        "{err}"
    );
}

#[test]
fn a_wrapped_key_moved_to_another_context_does_not_unwrap() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let t = init_under_kms(dir.path(), &moto);
    t.ok(&["keys", "rotate"]);
    let sealed_2 = t.ok_with(&["encode"], &plain_batch(&["under k2"]));
    let original = std::fs::read(&t.keyring).unwrap();

    // k1's wrapped key pasted into k2's slot: same KMS key, other key id in the context.
    let mut doc = t.document();
    doc["keys"][1]["wrapped_dek"] = doc["keys"][0]["wrapped_dek"].clone();
    std::fs::write(&t.keyring, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = t.fails(&["decode"], &sealed_2);
    assert!(
        err.contains("cannot unwrap data key k2") && err.contains("encryption context"),
        "{err}"
    );

    // The whole keyring renamed: every context names another keyring.
    let mut doc: serde_json::Value = serde_json::from_slice(&original).unwrap();
    doc["name"] = "billing".into();
    std::fs::write(&t.keyring, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = t.fails(&["decode"], &sealed_2);
    assert!(err.contains("cannot unwrap data key k2"), "{err}");

    std::fs::write(&t.keyring, &original).unwrap();
    assert_eq!(texts(&t.ok_with(&["decode"], &sealed_2)), ["under k2"]);
}

#[test]
fn a_kms_outage_fails_new_unwraps_cleanly_and_heals_when_kms_returns() {
    let moto = Moto::start();
    let mut outage = Outage::new(moto.endpoint.trim_start_matches("http://"));
    let dir = tempfile::tempdir().unwrap();
    let t = init_under_kms_at(dir.path(), &moto, &outage.url());
    let sealed_1 = t.ok_with(&["encode"], &plain_batch(&["early"]));
    t.ok(&["keys", "rotate"]);
    let sealed_2 = t.ok_with(&["encode"], &plain_batch(&["late"]));

    let mut decoder = LineDecoder::start(&t);
    assert_eq!(texts(&decoder.ask(&sealed_1)), ["early"]);

    outage.cut();
    // k1 is cached and keeps working; k2 needs KMS: a clear error, no crash.
    assert_eq!(texts(&decoder.ask(&sealed_1)), ["early"]);
    let answer: serde_json::Value = serde_json::from_str(&decoder.ask(&sealed_2)).unwrap();
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("cannot use key k2")
            && error.contains("aws-kms request Decrypt")
            && error.contains("failed"),
        "{error}"
    );
    assert_eq!(
        texts(&decoder.ask(&sealed_1)),
        ["early"],
        "the decoder goes on"
    );

    // KMS is back: the failure was not cached, k2 unwraps now.
    outage.restore();
    assert_eq!(texts(&decoder.ask(&sealed_2)), ["late"]);
    assert_eq!(texts(&decoder.ask(&sealed_1)), ["early"]);
    decoder.finish();
}

#[test]
fn kms_calls_scale_with_key_versions_not_payloads() {
    // 100,000 payloads encoded under three key versions, then decoded in one
    // batch: KMS is asked once per key version each way, as moto's request
    // log counts.
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let t = init_under_kms(dir.path(), &moto);
    let requests = || moto.log_text().matches("\"POST /").count();
    let mut all: Vec<serde_json::Value> = Vec::new();
    let mut encode_calls = 0;
    for (version, count) in [(1, 33_334), (2, 33_333), (3, 33_333)] {
        if version > 1 {
            t.ok(&["keys", "rotate"]);
        }
        let texts: Vec<String> = (0..count).map(|i| format!("\"v{version}-{i}\"")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let before = requests();
        let sealed = t.ok_with(&["encode"], &plain_batch(&refs));
        encode_calls += requests() - before;
        let mut v: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        all.append(v["payloads"].as_array_mut().unwrap());
    }
    assert_eq!(all.len(), 100_000);
    assert_eq!(
        encode_calls, 3,
        "KMS requests to encode 100,000 payloads under 3 keys"
    );

    let batch = serde_json::json!({ "payloads": all }).to_string();
    let before = requests();
    let decoded = t.ok_with(&["decode"], &batch);
    assert_eq!(
        requests() - before,
        3,
        "KMS requests to decode 100,000 payloads under 3 keys"
    );
    let texts = texts(&decoded);
    assert_eq!(texts.len(), 100_000);
    assert_eq!(
        (texts[0].as_str(), texts[99_999].as_str()),
        ("\"v1-0\"", "\"v3-33332\"")
    );
}

/// A KMS endpoint that accepts connections and drops them at once: KMS down,
/// with every attempt to reach it counted.
struct BlackHole {
    url: String,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl BlackHole {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&attempts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { url, attempts }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn readiness_probes_while_kms_is_down_cost_no_kms_call_and_stall_no_decode() {
    use support::server::ServeProcess;
    const PROBES: usize = 50;
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tcodec::new(dir.path());
    let master = t.ok(&["keys", "new-master-key"]).trim().to_owned();
    t.master_key = Some(master.clone());
    t.kms_endpoint = Some(moto.endpoint.clone());
    // k1 under the local master key (decodes need no KMS), k2, the primary, under KMS.
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    let sealed = t.ok_with(&["encode"], &plain_batch(&["no KMS needed"]));
    let key = moto.create_key();
    t.ok(&["keys", "add", "--kek", &format!("aws-kms:{key}")]);
    t.ok(&["keys", "promote", "k2"]);

    let hole = BlackHole::start();
    let master_file = dir.path().join("master.key");
    support::write_private(&master_file, master.as_bytes());
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[kek]\nmaster_key_file = {:?}\nkms_endpoint = {:?}\nkms_region = \"us-east-1\"\nkms_keys = [{key:?}]\n[namespaces.payments]\nkeyring = {:?}\n",
        master_file.display().to_string(),
        hole.url,
        t.keyring.display().to_string(),
    );
    let server = ServeProcess::start(
        &toml,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let readyz = format!("{}/readyz", server.url);
    // The background check has run (and failed: k2 needs KMS).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = support::server::curl(&[&readyz]);
        if body.contains("\"checked\":true") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never checked: {body}"
        );
        std::thread::yield_now();
    }

    let before = hole.attempts();
    let probes: Vec<_> = (0..PROBES)
        .map(|_| {
            let readyz = readyz.clone();
            std::thread::spawn(move || support::server::curl(&[&readyz]))
        })
        .collect();
    let decode = support::server::curl_post(&format!("{}/decode", server.url), "payments", &sealed);
    for _ in 0..10 {
        let (status, body) =
            support::server::curl(&decode.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            (status, texts(&body)),
            (200, vec!["no KMS needed".to_owned()])
        );
    }
    for probe in probes {
        let (status, body) = probe.join().unwrap();
        assert_eq!(status, 503, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"ready": false, "checked": true, "problems": 1, "warnings": 0})
        );
    }
    // At most the background check's own attempts (one KMS call, three tries;
    // two checks if the burst outlasted a backoff period), not one per probe.
    let attempts = hole.attempts() - before;
    assert!(
        attempts <= 6,
        "{attempts} KMS connection attempts during {PROBES} probes"
    );
    // The problem is in the log, for operators.
    assert!(
        server.log_text().contains("not ready"),
        "{}",
        server.log_text()
    );
}
