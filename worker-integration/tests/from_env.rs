//! `WorkerCodec::from_env` reads the KMS allow-list a deployment gives its
//! workers (`TCODEC_KMS_KEYS`): a keyring naming a KMS key that is not
//! listed is refused before KMS is called; once listed, the worker goes to
//! KMS for it. The environment is the process's, so each case runs this test
//! binary again as a child with its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0c0d1e2f-0000-4000-8000-000000000001";
const CHILD: &str = "TCODEC_TEST_FROM_ENV_CHILD";

/// In the child: opens the codec from the environment and encodes one
/// payload, printing the error.
fn child() {
    let codec = tcodec_worker::WorkerCodec::from_env().unwrap();
    // A worker splits large batches across the cores it may use.
    assert_eq!(codec.codec().options().threads, tcodec::available_threads());
    let err = codec
        .codec()
        .encode(&[tcodec::Payload::new("json/plain", b"\"x\"".to_vec())])
        .unwrap_err();
    eprintln!("ENCODE ERROR: {}", tcodec::display_chain(&err));
}

fn run(kms_keys: Option<&str>) -> String {
    let dir = std::env::temp_dir().join(format!("tcodec-from-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keyring = dir.join("keyring.json");
    // A keyring whose primary data key is wrapped by a KMS key (the wrapped
    // bytes never reach KMS here: the call is refused, or KMS is unreachable).
    std::fs::write(
        &keyring,
        format!(
            r#"{{"format": "tcodec-keyring", "version": 1, "name": "payments", "revision": 1,
               "keys": [{{"id": "k1", "created": "2026-12-03T10:00:00Z", "state": "primary",
                          "kek": {{"provider": "aws-kms", "key": "{KMS_KEY}"}},
                          "wrapped_dek": "AQIDBA=="}}]}}"#
        ),
    )
    .unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "from_env_reads_the_kms_allow_list",
        "--nocapture",
    ])
    .env(CHILD, "1")
    .env("TCODEC_KEYRING", &keyring)
    .env_remove("TCODEC_KMS_KEYS")
    .env_remove("TCODEC_MASTER_KEY")
    .env_remove("TCODEC_MASTER_KEY_FILE")
    // Nothing listens here: a KMS call fails at once.
    .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_MAX_ATTEMPTS", "1");
    if let Some(keys) = kms_keys {
        cmd.env("TCODEC_KMS_KEYS", keys);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("ENCODE ERROR: "))
        .unwrap_or_else(|| panic!("the child printed no error:\n{text}"))
        .to_owned()
}

#[test]
fn from_env_reads_the_kms_allow_list() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let unlisted = run(None);
    assert!(
        unlisted.contains("not one of the KMS keys allowed here") && unlisted.contains(KMS_KEY),
        "{unlisted}"
    );
    let listed = run(Some(&format!("alias/other, {KMS_KEY}")));
    assert!(
        !listed.contains("not one of the KMS keys allowed")
            && listed.contains("aws-kms request Decrypt for data key k1 failed"),
        "{listed}"
    );
}
