//! The real `temporal` CLI against a real Temporal dev server, with tcodec as
//! its codec server behind JWT auth: what the CLI stores is ciphertext, and
//! `temporal workflow show --codec-endpoint … --codec-auth …` shows plaintext
//! only to a caller allowed to read the namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::server::{Issuer, Keyrings, ServeProcess};
use support::temporal::{DevServer, readable_strings};

const CARD: &str = "4111 1111 1111 1111";
const ADDRESS: &str = "12 Crescent Road, Bath";
const NOTE: &str = "VIP customer, call before charging";

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn holds(json: &str, secret: &str) -> bool {
    readable_strings(json).iter().any(|s| s.contains(secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_cli_stores_ciphertext_and_shows_plaintext_through_tcodec() {
    let issuer = Issuer::start().await;
    let keys = Keyrings::new(&["default"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n{}{}",
        issuer.auth_toml(),
        keys.toml(&[("default", "")])
    );
    let codec = ServeProcess::start(&toml, &[]);
    let temporal = DevServer::start();
    // The CLI replaces {namespace} in the endpoint.
    let endpoint = format!("{}/codec/{{namespace}}", codec.url);
    let writer =
        issuer.bearer(json!({"email": "ops@example.com", "permissions": ["default:write"]}));
    let reader =
        issuer.bearer(json!({"email": "ada@example.com", "permissions": ["default:read"]}));
    let outsider =
        issuer.bearer(json!({"email": "eve@example.com", "permissions": ["payments:read"]}));
    // `args` followed by the codec endpoint and `--codec-auth auth`.
    let with_codec = |args: &[&str], auth: &str| -> Vec<String> {
        let codec = ["--codec-endpoint", &endpoint, "--codec-auth", auth];
        args.iter().chain(&codec).map(|a| (*a).to_owned()).collect()
    };
    let run = |args: &[&str], auth: &str| temporal.cli_ok(&strs(&with_codec(args, auth)));
    const SHOW: [&str; 6] = [
        "workflow",
        "show",
        "--workflow-id",
        "onb-1",
        "--output",
        "json",
    ];

    // The CLI encodes through tcodec: input, memo and a signal.
    let input = json!({"name": "Ada Lovelace", "card": CARD}).to_string();
    let memo = format!("note={}", json!(NOTE));
    run(
        &[
            "workflow",
            "start",
            "--task-queue",
            "onboarding",
            "--type",
            "Onboard",
            "--workflow-id",
            "onb-1",
            "--input",
            &input,
            "--memo",
            &memo,
        ],
        &writer,
    );
    let signal = json!(ADDRESS).to_string();
    run(
        &[
            "workflow",
            "signal",
            "--workflow-id",
            "onb-1",
            "--name",
            "address",
            "--input",
            &signal,
        ],
        &writer,
    );

    // What the server holds: tcodec ciphertext and no plaintext, raw or base64.
    let raw = temporal.cli_ok(&SHOW);
    let described = temporal.describe("onb-1", None);
    for doc in [&raw, &described] {
        for secret in [CARD, "Ada Lovelace", ADDRESS, NOTE] {
            assert!(
                !holds(doc, secret),
                "the server's copy holds {secret:?}:\n{doc}"
            );
        }
    }
    let sealed = readable_strings(&raw)
        .iter()
        .filter(|s| *s == "binary/tcodec")
        .count();
    assert_eq!(
        sealed, 3,
        "input, memo and signal should be tcodec payloads:\n{raw}"
    );
    assert!(
        readable_strings(&described)
            .iter()
            .any(|s| s == "binary/tcodec"),
        "{described}"
    );

    // A reader of the namespace sees the plaintext through the codec server.
    let decoded = run(&SHOW, &reader);
    for secret in [CARD, "Ada Lovelace", ADDRESS] {
        assert!(
            holds(&decoded, secret),
            "decoded history lacks {secret:?}:\n{decoded}"
        );
    }
    assert!(
        !readable_strings(&decoded)
            .iter()
            .any(|s| s == "binary/tcodec"),
        "{decoded}"
    );

    // Someone without read access to the namespace, or without a token, gets nothing.
    for auth in [outsider.as_str(), "Bearer not-a-token"] {
        let out = temporal.cli(&strs(&with_codec(&SHOW, auth)));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "temporal should fail with {auth:?}: {stdout}"
        );
        assert!(!stdout.contains(CARD), "{stdout}");
    }

    // The audit log names each caller and the namespace the CLI sent.
    let log = codec.log_text();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "tcodec::audit")
        .collect();
    let count = |user: &str, endpoint: &str, status: u64| {
        audit
            .iter()
            .filter(|v| {
                v["user"] == user
                    && v["endpoint"] == endpoint
                    && v["status"] == status
                    && v["namespace"] == "default"
            })
            .count()
    };
    assert!(count("ops@example.com", "encode", 200) >= 3, "{log}");
    assert!(count("ada@example.com", "decode", 200) >= 2, "{log}");
    assert!(count("eve@example.com", "decode", 403) >= 1, "{log}");
    for secret in [CARD, "Ada Lovelace", ADDRESS, NOTE] {
        assert!(
            !log.contains(secret),
            "the codec server's log holds {secret:?}"
        );
    }
}

/// `tcodec history check` on what the server holds: a history written through
/// tcodec passes; a plaintext signal sent past the codec, a workflow started
/// without it, and its memo as `describe` prints it are each named by event
/// and field, never shown. `tcodec history decode` reads the sealed history.
#[test]
fn tcodec_history_check_names_every_plaintext_payload_and_decode_reads_the_rest() {
    let keys = Keyrings::new(&["default"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}",
        keys.toml(&[("default", "")])
    );
    let codec = ServeProcess::start(&toml, &[]);
    let temporal = DevServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut t = support::Tcodec::new(dir.path());
    t.keyring = keys.keyring("default");
    t.master_key = Some(support::server::MASTER_KEY_HEX.into());
    let key_id = t
        .states()
        .into_iter()
        .find(|(_, state)| state == "primary")
        .unwrap()
        .0;
    let endpoint = format!("{}/codec/{{namespace}}", codec.url);

    let input = json!({"name": "Ada Lovelace", "card": CARD}).to_string();
    let memo = format!("note={}", json!(NOTE));
    let start = |id: &str| {
        vec![
            "workflow".to_owned(),
            "start".into(),
            "--task-queue".into(),
            "onboarding".into(),
            "--type".into(),
            "Onboard".into(),
            "--workflow-id".into(),
            id.into(),
            "--input".into(),
            input.clone(),
            "--memo".into(),
            memo.clone(),
        ]
    };
    let with_codec = |mut args: Vec<String>| {
        args.extend(["--codec-endpoint".into(), endpoint.clone()]);
        args
    };
    let show = |id: &str| temporal.history(id, None);
    let describe = |id: &str| temporal.describe(id, None);
    let check = |doc: &str| {
        let out = t.run_with(&["history", "check"], doc);
        let stdout = String::from_utf8(out.stdout).unwrap();
        for secret in [CARD, "Ada Lovelace", ADDRESS, NOTE, "Attacker"] {
            assert!(!stdout.contains(secret), "the check printed {secret:?}");
        }
        (out.status.code(), stdout)
    };

    // Sealed through tcodec: input, memo and a signal.
    let signal = |input: &str| {
        [
            "workflow",
            "signal",
            "--workflow-id",
            "sealed",
            "--name",
            "address",
            "--input",
            input,
        ]
        .map(String::from)
        .to_vec()
    };
    temporal.cli_ok(&strs(&with_codec(start("sealed"))));
    temporal.cli_ok(&strs(&with_codec(signal(&json!(ADDRESS).to_string()))));
    let raw = show("sealed");
    let (code, report) = check(&raw);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("payloads: 3\n"), "{report}");
    assert!(
        report.contains(&format!("sealed binary/tcodec: under {key_id} (3)")),
        "{report}"
    );
    let (code, report) = check(&describe("sealed"));
    assert_eq!(code, Some(0), "{report}");

    // Decoded with the keyring: the plaintext, as the codec server shows it.
    let decoded = t.ok_with(&["history", "decode"], &raw);
    for secret in [CARD, "Ada Lovelace", ADDRESS, NOTE] {
        assert!(holds(&decoded, secret), "{secret:?} not in:\n{decoded}");
    }
    let show_args = [
        "workflow",
        "show",
        "--workflow-id",
        "sealed",
        "--output",
        "json",
    ];
    let through_server = temporal.cli_ok(&strs(&with_codec(show_args.map(String::from).to_vec())));
    let payloads = |doc: &str| {
        readable_strings(doc)
            .into_iter()
            .filter(|s| s.contains("Lovelace") || s.contains("Crescent") || s.contains("VIP"))
            .collect::<Vec<_>>()
    };
    assert_eq!(payloads(&decoded), payloads(&through_server));

    // Someone with the server's API signals in plaintext, past the codec.
    temporal.cli_ok(&strs(&signal("\"1 Attacker Street\"")));
    let (code, report) = check(&show("sealed"));
    assert_eq!(code, Some(1), "{report}");
    let signaled: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("PLAINTEXT"))
        .collect();
    assert_eq!(
        signaled,
        ["PLAINTEXT event 4 (WORKFLOW_EXECUTION_SIGNALED) \
          workflowExecutionSignaledEventAttributes.input.payloads[0]: json/plain, not sealed"],
        "{report}"
    );

    // A workflow started without tcodec: its input and memo, and the memo
    // again as `describe` prints it (as its JSON value).
    temporal.cli_ok(&strs(&start("plain")));
    let (code, report) = check(&show("plain"));
    assert_eq!(code, Some(1), "{report}");
    for place in [
        "event 1 (WORKFLOW_EXECUTION_STARTED) workflowExecutionStartedEventAttributes.input.payloads[0]: json/plain",
        "event 1 (WORKFLOW_EXECUTION_STARTED) workflowExecutionStartedEventAttributes.memo.fields.note: json/plain",
    ] {
        assert!(report.contains(place), "{place} not in:\n{report}");
    }
    let (code, report) = check(&describe("plain"));
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report
            .contains("PLAINTEXT workflowExecutionInfo.memo.fields.note: a value printed as JSON"),
        "{report}"
    );

    // Not a history at all: exit status 2, and the reason.
    let out = t.run_with(&["history", "check"], "{\"events\": [");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input is not JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
