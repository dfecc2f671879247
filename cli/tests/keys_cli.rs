//! `tcodec keys` with the local master key: output, errors, confirmation,
//! secrets, and concurrent writers in separate processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Tcodec, plain_batch, texts};

fn local(dir: &std::path::Path) -> Tcodec {
    let mut t = Tcodec::new(dir);
    t.master_key = Some(t.ok(&["keys", "new-master-key"]).trim().to_owned());
    t
}

#[test]
fn new_master_keys_are_random_hex() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tcodec::new(dir.path());
    let a = t.ok(&["keys", "new-master-key"]);
    let b = t.ok(&["keys", "new-master-key"]);
    assert_eq!(a.trim().len(), 64);
    assert!(a.trim().bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn list_shows_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let t = local(dir.path());
    let out = t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    assert!(out.contains("created in keyring payments"), "{out}");
    t.ok(&["keys", "add"]);
    let table = t.ok(&["keys", "list"]);
    let lines: Vec<_> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATE") && lines[0].contains("KEK"));
    assert!(
        lines[1].starts_with("k1") && lines[1].contains("primary") && lines[1].contains("local:")
    );
    assert!(lines[2].starts_with("k2") && lines[2].contains("pending"));

    let json: serde_json::Value = serde_json::from_str(&t.ok(&["keys", "list", "--json"])).unwrap();
    assert_eq!(json["keyring"], "payments");
    assert_eq!(json["revision"], 2);
    assert_eq!(json["keys"][1]["state"], "pending");
    let promoted: serde_json::Value =
        serde_json::from_str(&t.ok(&["keys", "promote", "k2", "--json"])).unwrap();
    assert_eq!(
        promoted,
        serde_json::json!({"id": "k2", "state": "primary"})
    );
}

#[test]
fn two_phase_rotation_keeps_old_payloads_readable() {
    let dir = tempfile::tempdir().unwrap();
    let t = local(dir.path());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    let old = t.ok_with(&["encode"], &plain_batch(&["before"]));
    t.ok(&["keys", "add"]);
    // Pending: decrypts, but the primary still encrypts.
    let still_k1 = t.ok_with(&["encode"], &plain_batch(&["during"]));
    assert_eq!(support::key_ids(&still_k1), ["k1"]);
    t.ok(&["keys", "promote", "k2"]);
    let new = t.ok_with(&["encode"], &plain_batch(&["after"]));
    assert_eq!(support::key_ids(&new), ["k2"]);
    for (sealed, text) in [(&old, "before"), (&still_k1, "during"), (&new, "after")] {
        assert_eq!(texts(&t.ok_with(&["decode"], sealed)), [text]);
    }
}

#[test]
fn destroy_asks_for_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let t = local(dir.path());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    t.ok(&["keys", "rotate"]);
    t.ok(&["keys", "disable", "k1"]);
    // Not at a terminal and no --yes: refused, nothing changes.
    let err = t.fails(&["keys", "destroy", "k1"], "k1\n");
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(t.states()[0].1, "disabled");
    t.ok(&["keys", "destroy", "k1", "--yes"]);
    assert_eq!(t.states()[0].1, "destroyed");
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tcodec::new(dir.path());
    let err = t.fails(&["keys", "init", "--name", "p", "--kek", "local"], "");
    assert!(
        err.contains("TCODEC_MASTER_KEY") && err.contains("new-master-key"),
        "{err}"
    );
    t.master_key = Some("not a key".into());
    let err = t.fails(&["keys", "init", "--name", "p", "--kek", "local"], "");
    assert!(err.contains("local master key"), "{err}");
    let t = local(dir.path());
    let err = t.fails(&["keys", "list"], "");
    assert!(err.contains("cannot read keyring"), "{err}");
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    let err = t.fails(
        &["keys", "init", "--name", "payments", "--kek", "local"],
        "",
    );
    assert!(err.contains("already exists"), "{err}");
    let err = t.fails(&["keys", "disable", "k1"], "");
    assert!(
        err.contains("key k1 is primary: promote another key"),
        "{err}"
    );
    std::fs::write(&t.keyring, b"{ not json").unwrap();
    let err = t.fails(&["keys", "list"], "");
    assert!(err.contains("is not a valid keyring"), "{err}");
    let err = t.fails(&["decode"], &plain_batch(&["x"]));
    assert!(err.contains("is not a valid keyring"), "{err}");
}

#[test]
fn a_master_key_file_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut t = local(dir.path());
    let file = dir.path().join("master.key");
    std::fs::write(&file, t.master_key.take().unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let init = [
        "keys",
        "init",
        "--name",
        "payments",
        "--kek",
        "local",
        "--master-key-file",
    ];
    let mut args = init.to_vec();
    args.push(file.to_str().unwrap());
    let err = t.fails(&args, "");
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    t.ok(&args);
}

#[test]
fn no_secret_reaches_the_keyring_file_or_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let t = local(dir.path());
    let master = t.master_key.clone().unwrap();
    let mut seen = String::new();
    seen += &t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    seen += &t.ok(&["keys", "rotate", "--json"]);
    seen += &t.ok(&["keys", "list", "--json"]);
    seen += &String::from_utf8(std::fs::read(&t.keyring).unwrap()).unwrap();
    seen += &t.fails(&["keys", "destroy", "k2", "--yes"], "");
    assert!(!seen.to_lowercase().contains(&master.to_lowercase()));
    assert!(!seen.contains(&master[..16]));
}

#[test]
fn concurrent_rotations_in_separate_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = local(dir.path());
    t.ok(&["keys", "init", "--name", "payments", "--kek", "local"]);
    let children: Vec<_> = (0..8)
        .map(|_| {
            t.command(&["keys", "rotate"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let states = t.states();
    assert_eq!(states.len(), 9, "{states:?}");
    assert_eq!(states.iter().filter(|(_, s)| s == "primary").count(), 1);
    assert_eq!(t.document()["revision"], 9);
    let ids: std::collections::BTreeSet<_> = states.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 9);
    // Every version still unwraps: encode under the primary, decode all.
    let sealed = t.ok_with(&["encode"], &plain_batch(&["ok"]));
    assert_eq!(texts(&t.ok_with(&["decode"], &sealed)), ["ok"]);
}
