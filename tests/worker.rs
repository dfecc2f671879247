//! The reference onboarding workflow on a real Temporal dev server, with the
//! tcodec worker integration: results are right, the server holds only
//! ciphertext, the codec server decodes it, key rotation does not disturb
//! running workflows, a worker missing a key fails its task clearly and
//! recovers once its keyring is fixed, and a payload or failure message
//! written in plaintext past the codec is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use support::temporal::{DevServer, readable_strings};
use support::{CodecServer, Keys, Worker};
use tcodec_onboarding::{self as onboarding, CONFIRMED_ADDRESS, Customer};
use tcodec_worker::WorkerCodec;

/// What must never reach the server in plaintext.
const SECRETS: [&str; 5] = [
    "4111 1111 1111 1111",
    "Ada Lovelace",
    "12 Crescent Road",
    "7 Royal Crescent",
    "ada@example.com",
];

fn holds(json: &str, secret: &str) -> bool {
    readable_strings(json).iter().any(|s| s.contains(secret))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client (starter) using the keyring at `keys.keyring`.
struct Starter {
    rt: tokio::runtime::Runtime,
    client: temporalio_client::Client,
    codec: WorkerCodec,
}

impl Starter {
    fn new(temporal: &DevServer, keys: &Keys) -> Self {
        let rt = runtime();
        let codec = WorkerCodec::open(&keys.keyring, &keys.settings()).unwrap();
        let client = rt
            .block_on(onboarding::connect(
                &temporal.address,
                "default",
                codec.data_converter(),
            ))
            .unwrap();
        Self { rt, client, codec }
    }

    fn start(&self, id: &str) {
        self.rt
            .block_on(onboarding::start(&self.client, id, Customer::example()))
            .unwrap();
    }

    fn signal(&self, id: &str) {
        self.rt
            .block_on(onboarding::confirm_address(&self.client, id))
            .unwrap();
    }

    fn result(&self, id: &str) -> onboarding::Account {
        self.rt
            .block_on(onboarding::result(&self.client, id))
            .unwrap()
    }
}

fn events(history: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(history).unwrap();
    v["events"].as_array().unwrap().clone()
}

/// `tcodec history check` on `doc`: whether it found everything sealed
/// (exit status 0; 1 is plaintext found, anything else a failure), and its
/// report. The binary is the one `cargo test --workspace` builds beside this
/// test's.
fn history_check(doc: &str) -> (bool, String) {
    use std::io::Write;
    let exe = std::env::current_exe().unwrap();
    let tcodec = exe.parent().and_then(Path::parent).unwrap().join("tcodec");
    assert!(
        tcodec.exists(),
        "{} is missing: `cargo test --workspace` builds it, or `cargo build -p tcodec-cli \
         --profile test`",
        tcodec.display()
    );
    let mut child = std::process::Command::new(&tcodec)
        .args(["history", "check"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8(out.stdout).unwrap();
    match out.status.code() {
        Some(0) => (true, report),
        Some(1) => (false, report),
        _ => panic!(
            "tcodec history check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The key id of the workflow's input payload.
fn input_key_id(history: &str) -> String {
    let started = &events(history)[0]["workflowExecutionStartedEventAttributes"];
    let id = started["input"]["payloads"][0]["metadata"]["tcodec-key-id"]
        .as_str()
        .unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(id)
            .unwrap(),
    )
    .unwrap()
}

/// The message of the first failed workflow task of workflow `id`, waiting
/// (up to a minute, polling the history) for one.
fn task_failure(temporal: &DevServer, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let raw = temporal.history(id, None);
        if let Some(event) = events(&raw)
            .into_iter()
            .find(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_FAILED")
        {
            return event["workflowTaskFailedEventAttributes"]["failure"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the workflow task never failed:\n{raw}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn onboarding_completes_and_the_server_holds_only_ciphertext() {
    let keys = Keys::new();
    let temporal = DevServer::start();
    let _worker = Worker::start(&temporal.address, &keys.keyring, &keys.settings());
    let starter = Starter::new(&temporal, &keys);
    starter.start("onb-1");
    starter.signal("onb-1");

    // (a) the workflow completes with the right result.
    let account = starter.result("onb-1");
    assert_eq!(account.holder, "Ada Lovelace");
    assert_eq!(account.card_last4, "1111");
    assert_eq!(account.address, CONFIRMED_ADDRESS);
    assert!(
        account.welcome.contains("Ada Lovelace") && account.welcome.contains(CONFIRMED_ADDRESS)
    );

    // (b) the server's copy: no secret, raw or base64-decoded, anywhere in
    // inputs, results, the signal, the memo or the activity's failure.
    let raw = temporal.history("onb-1", None);
    let raw_described = temporal.describe("onb-1", None);
    for doc in [&raw, &raw_described] {
        for secret in SECRETS {
            assert!(!holds(doc, secret), "the server holds {secret:?}:\n{doc}");
        }
    }
    let types: Vec<String> = events(&raw)
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in {types:?}"
        );
    }
    // Every payload is a tcodec payload: input, signal, activity inputs and
    // results, the workflow result, and the retried activity's failure attributes.
    let strings = readable_strings(&raw);
    let sealed = strings.iter().filter(|s| *s == "binary/tcodec").count();
    let plain = strings.iter().filter(|s| s.starts_with("json/")).count();
    assert!(sealed >= 7, "only {sealed} tcodec payloads:\n{raw}");
    assert_eq!(plain, 0, "plaintext payloads in:\n{raw}");
    assert!(
        raw.contains("\"Encoded failure\""),
        "the activity's failure should be encoded:\n{raw}"
    );
    assert!(
        readable_strings(&raw_described)
            .iter()
            .any(|s| s == "binary/tcodec"),
        "memo: {raw_described}"
    );
    // `tcodec history check` finds the same: every payload sealed under the
    // keyring's one key, the activity's failures encoded.
    for doc in [&raw, &raw_described] {
        let (sealed, report) = history_check(doc);
        assert!(sealed, "{report}");
        assert!(
            report.contains("sealed binary/tcodec: under k1 ("),
            "{report}"
        );
    }
    let (_, report) = history_check(&raw);
    assert!(report.contains("failures: "), "{report}");
    assert!(!report.contains("failures: 0 "), "{report}");

    // (c) through the codec server, the same history decodes to the plaintext.
    let server = CodecServer::start(&keys.keyring, &keys.master_key_file);
    let decoded = temporal.history("onb-1", Some(&server.url));
    for secret in SECRETS {
        assert!(
            holds(&decoded, secret),
            "decoded history lacks {secret:?}:\n{decoded}"
        );
    }
    assert!(
        holds(
            &decoded,
            "identity check for Ada Lovelace with card 4111 1111 1111 1111 timed out"
        ),
        "the failure message decodes:\n{decoded}"
    );
    let decoded_described = temporal.describe("onb-1", Some(&server.url));
    assert!(
        holds(&decoded_described, "Ada Lovelace <ada@example.com>"),
        "memo: {decoded_described}"
    );
}

#[test]
fn rotating_the_key_while_workflows_run_disturbs_none() {
    let keys = Keys::new();
    let temporal = DevServer::start();
    let _worker = Worker::start(&temporal.address, &keys.keyring, &keys.settings());
    let starter = Starter::new(&temporal, &keys);
    let before: Vec<String> = (0..3).map(|i| format!("before-{i}")).collect();
    let after: Vec<String> = (0..3).map(|i| format!("after-{i}")).collect();
    for id in &before {
        starter.start(id);
    }
    // The workflows started under k1 are running (waiting for their signal).
    let k2 = keys.rotate();
    assert_eq!(k2, "k2");
    // Readers pick the change up by watching the file; the starter is told at once.
    starter.codec.keyring().reload().unwrap();
    for id in &after {
        starter.start(id);
    }
    for id in before.iter().chain(&after) {
        starter.signal(id);
    }
    for id in before.iter().chain(&after) {
        let account = starter.result(id);
        assert_eq!(account.address, CONFIRMED_ADDRESS, "{id}");
    }
    let server = CodecServer::start(&keys.keyring, &keys.master_key_file);
    for (ids, key) in [(&before, "k1"), (&after, "k2")] {
        for id in ids {
            let raw = temporal.history(id, None);
            assert_eq!(input_key_id(&raw), key, "{id}");
            for secret in SECRETS {
                assert!(!holds(&raw, secret), "{id} holds {secret:?}");
            }
            let decoded = temporal.history(id, Some(&server.url));
            for secret in SECRETS {
                assert!(
                    holds(&decoded, secret),
                    "{id}: decoded history lacks {secret:?}"
                );
            }
        }
    }
}

#[test]
fn a_worker_missing_the_key_fails_its_task_and_recovers_when_the_keyring_is_fixed() {
    let keys = Keys::new();
    // The worker's keyring is a stale copy holding only k1.
    let stale = keys.dir.path().join("worker-keyring.json");
    std::fs::copy(&keys.keyring, &stale).unwrap();
    assert_eq!(keys.rotate(), "k2");
    let temporal = DevServer::start();
    let _worker = Worker::start(&temporal.address, &stale, &keys.settings());
    let starter = Starter::new(&temporal, &keys);
    starter.start("onb-stale");

    // The worker cannot open the k2 input: its workflow task fails, with a
    // message naming the key and no customer data.
    let message = task_failure(&temporal, "onb-stale");
    assert!(
        message.contains("k2") && message.contains("not in the keyring"),
        "{message}"
    );
    for secret in SECRETS {
        assert!(!message.contains(secret), "{message}");
    }

    // Fix the worker's keyring (atomically, as `tcodec keys` writes it): the
    // workflow was not lost and completes.
    let fixed = keys.dir.path().join("worker-keyring.json.new");
    std::fs::copy(&keys.keyring, &fixed).unwrap();
    std::fs::rename(&fixed, &stale).unwrap();
    starter.signal("onb-stale");
    let account = starter.result("onb-stale");
    assert_eq!(account.holder, "Ada Lovelace");
}

#[test]
fn a_plaintext_signal_sent_past_the_codec_fails_the_workflow_task_and_never_runs() {
    let keys = Keys::new();
    let temporal = DevServer::start();
    let _worker = Worker::start(&temporal.address, &keys.keyring, &keys.settings());
    let starter = Starter::new(&temporal, &keys);
    starter.start("onb-swap");
    // Whoever runs the server (or holds its API) signals the workflow with a
    // plaintext address of their choosing, past the codec.
    const FORGED: &str = "1 Attacker Street";
    temporal.cli_ok(&[
        "workflow",
        "signal",
        "--workflow-id",
        "onb-swap",
        "--name",
        "confirm_address",
        "--input",
        &format!("{FORGED:?}"),
    ]);
    let raw = temporal.history("onb-swap", None);
    let signal = events(&raw)
        .into_iter()
        .find(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED")
        .unwrap();
    let payload = &signal["workflowExecutionSignaledEventAttributes"]["input"]["payloads"][0];
    let encoding = base64::engine::general_purpose::STANDARD
        .decode(payload["metadata"]["encoding"].as_str().unwrap())
        .unwrap();
    assert_eq!(encoding, b"json/plain", "the signal went in as plaintext");

    // The worker refuses it: the workflow task fails, naming the payload's
    // encoding and the setting that would accept it.
    let message = task_failure(&temporal, "onb-swap");
    assert!(
        message.contains("not sealed by tcodec")
            && message.contains("json/plain")
            && message.contains("TCODEC_DECODE_ALLOW"),
        "{message}"
    );
    // And the workflow does not run on it: it is still waiting, and the
    // account was never opened.
    let described: serde_json::Value =
        serde_json::from_str(&temporal.describe("onb-swap", None)).unwrap();
    assert_eq!(
        described["workflowExecutionInfo"]["status"], "WORKFLOW_EXECUTION_STATUS_RUNNING",
        "{described}"
    );
    let raw = temporal.history("onb-swap", None);
    let opened = events(&raw).into_iter().any(|e| {
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
            .as_str()
            .is_some_and(|name| name.contains("open_account"))
    });
    assert!(!opened, "the account was opened on a forged signal:\n{raw}");
}

#[test]
fn a_plaintext_failure_written_past_the_codec_is_refused_by_a_tcodec_client() {
    let keys = Keys::new();
    let temporal = DevServer::start();
    // A worker without tcodec fails workflow `forged` with a message of its
    // choosing, stored in plaintext.
    const FORGED: &str = "transfer approved by compliance";
    let status = std::process::Command::new(support::venv_bin("python"))
        .arg(support::repo_root().join("tests/support/rogue_worker.py"))
        .args([&temporal.address, "forged", FORGED])
        .status()
        .unwrap();
    assert!(status.success());
    let raw = temporal.history("forged", None);
    assert!(raw.contains(FORGED), "the failure is stored in plaintext");
    // `tcodec history check` names it (by event, not by content).
    let (sealed, report) = history_check(&raw);
    assert!(!sealed, "{report}");
    assert!(
        report.contains(
            "(WORKFLOW_EXECUTION_FAILED) workflowExecutionFailedEventAttributes.failure: \
             a failure message and stack trace in plaintext \
             (an application failure of type \"Approval\", no encoded attributes)"
        ),
        "{report}"
    );
    assert!(!report.contains(FORGED), "{report}");

    // A tcodec client asking for the result is refused, naming the setting.
    let starter = Starter::new(&temporal, &keys);
    let err = starter
        .rt
        .block_on(onboarding::result(&starter.client, "forged"))
        .unwrap_err();
    let text = tcodec::display_chain(err.as_ref());
    assert!(
        text.contains("in plaintext") && text.contains("TCODEC_DECODE_ALLOW"),
        "{text}"
    );
    assert!(!text.contains(FORGED), "{text}");

    // A client migrating from plaintext workers (json/plain allowed) reads it.
    let migrating = WorkerCodec::open_with(
        &keys.keyring,
        &keys.settings(),
        tcodec::CodecOptions::default()
            .with_decode_policy(tcodec_worker::decode_policy_from("json/plain")),
    )
    .unwrap();
    let client = starter
        .rt
        .block_on(onboarding::connect(
            &temporal.address,
            "default",
            migrating.data_converter(),
        ))
        .unwrap();
    let err = starter
        .rt
        .block_on(onboarding::result(&client, "forged"))
        .unwrap_err();
    let text = tcodec::display_chain(err.as_ref());
    assert!(text.contains(FORGED), "{text}");
}

/// The `encoding` of every payload in a history (JSON from `temporal workflow
/// show`), in order.
fn encodings(history: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(e) = map
                    .get("metadata")
                    .and_then(|m| m.get("encoding"))
                    .and_then(|e| e.as_str())
                {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(e).unwrap();
                    out.push(String::from_utf8(bytes).unwrap());
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&serde_json::from_str(history).unwrap(), &mut out);
    out
}

#[test]
fn a_workflow_a_samples_codec_worker_started_is_finished_by_a_tcodec_worker_given_the_old_key() {
    let keys = Keys::new();
    // The key the samples' codec used, as the samples keep it: 32 characters.
    let key_file = keys.dir.path().join("samples.key");
    std::fs::write(&key_file, "test-key-test-key-test-key-test!").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let temporal = DevServer::start();

    // A Python worker on the official SDK, with the samples' encryption
    // codec, starts onboarding and runs it until it waits for the signal.
    let status = std::process::Command::new(support::venv_bin("python"))
        .arg(support::repo_root().join("tests/support/samples_worker.py"))
        .args([&temporal.address, "migrated"])
        .arg(&key_file)
        .arg("samples-2024")
        .status()
        .unwrap();
    assert!(status.success());
    let before = temporal.history("migrated", None);
    assert!(
        encodings(&before).iter().all(|e| e == "binary/encrypted"),
        "{:?}",
        encodings(&before)
    );

    // The old key goes into the keyring (decrypt-only); a tcodec worker
    // whose decode policy allows the samples' format takes over.
    let secret = tcodec_keys::kek::local::read_key_file(&key_file).unwrap();
    tcodec_keys::ops::import_legacy(&keys.keyring, &Keys::keks(), None, "samples-2024", &secret)
        .unwrap();
    let _worker = Worker::start_allowing(
        &temporal.address,
        &keys.keyring,
        &keys.settings(),
        "binary/encrypted",
    );
    let starter = Starter::new(&temporal, &keys);
    starter.signal("migrated");
    let account = starter.result("migrated");
    // The customer came from the Python starter's samples-format input, the
    // address from tcodec's signal.
    assert_eq!(account.holder, "Ada Lovelace");
    assert_eq!(account.card_last4, "1111");
    assert_eq!(account.address, CONFIRMED_ADDRESS);

    // The history holds both formats, and nothing in plaintext.
    let raw = temporal.history("migrated", None);
    let found = encodings(&raw);
    assert!(found.iter().any(|e| e == "binary/encrypted"), "{found:?}");
    assert!(found.iter().any(|e| e == "binary/tcodec"), "{found:?}");
    assert!(
        found
            .iter()
            .all(|e| e == "binary/encrypted" || e == "binary/tcodec"),
        "{found:?}"
    );
    for secret in SECRETS {
        assert!(!holds(&raw, secret), "raw history holds {secret}");
    }

    // The codec server, allowing the samples' format for the namespace,
    // decodes every payload of both kinds; the temporal CLI shows them.
    let codec = CodecServer::start_with(
        &keys.keyring,
        &keys.master_key_file,
        "decode_allow = [\"binary/encrypted\"]",
    );
    let decoded = temporal.history("migrated", Some(&codec.url));
    let found = encodings(&decoded);
    assert!(
        found
            .iter()
            .all(|e| e != "binary/encrypted" && e != "binary/tcodec"),
        "undecoded payloads: {found:?}"
    );
    for secret in SECRETS {
        assert!(holds(&decoded, secret), "decoded history lacks {secret}");
    }
    assert!(holds(&decoded, "verified ada@example.com"));
    // Without the exception, the samples' payloads stay as they are.
    let strict = CodecServer::start(&keys.keyring, &keys.master_key_file);
    let shown = temporal.history("migrated", Some(&strict.url));
    assert!(encodings(&shown).iter().any(|e| e == "binary/encrypted"));
    assert!(!holds(&shown, "12 Crescent Road"));
}
