//! The keyring document, the local KEK, and the file-backed keyring: cache,
//! reload, corruption, concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tcodec_keys::document::{DocumentError, KekRef, KeyringDocument};
use tcodec_keys::kek::local::LocalKek;
use tcodec_keys::kek::{EncryptionContext, KekError, KekProvider, Keks};
use tcodec_keys::ops::{self, OpError, Transition};
use tcodec_keys::store::StoreError;
use tcodec_keys::{FileKeyring, KeyError, KeyId, KeySource, KeyState, SecretBytes32};

const MASTER: [u8; 32] = [0x5c; 32];

fn local() -> Arc<LocalKek> {
    Arc::new(LocalKek::new(&SecretBytes32::new(MASTER)))
}

/// The real local KEK, counting its unwraps.
#[derive(Debug)]
struct Counting {
    inner: Arc<LocalKek>,
    unwraps: AtomicUsize,
}

impl KekProvider for Counting {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn kek_ref(&self, key: Option<&str>) -> Result<KekRef, KekError> {
        self.inner.kek_ref(key)
    }
    fn generate(
        &self,
        kek: &KekRef,
        ctx: &EncryptionContext,
    ) -> Result<(SecretBytes32, Vec<u8>), KekError> {
        self.inner.generate(kek, ctx)
    }
    fn wrap(
        &self,
        kek: &KekRef,
        dek: &SecretBytes32,
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KekError> {
        self.inner.wrap(kek, dek, ctx)
    }
    fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<SecretBytes32, KekError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(kek, wrapped, ctx)
    }
}

fn init(dir: &Path) -> (std::path::PathBuf, Keks, KekRef) {
    let path = dir.join("keyring.json");
    let kek = local();
    let kek_ref = kek.kek_ref(None).unwrap();
    let keks = Keks::new().with(kek);
    ops::init(&path, "payments", &keks, &kek_ref).unwrap();
    (path, keks, kek_ref)
}

/// The local KEK behind a counter of its unwraps, and the `Keks` holding it.
fn counting_keks() -> (Arc<Counting>, Keks) {
    let counting = Arc::new(Counting {
        inner: local(),
        unwraps: AtomicUsize::new(0),
    });
    let keks = Keks::new().with(counting.clone());
    (counting, keks)
}

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

#[derive(Deserialize)]
struct LocalVectors {
    vectors: Vec<LocalVector>,
}

#[derive(Deserialize)]
struct LocalVector {
    name: String,
    expect: String,
    master_key: String,
    fingerprint: String,
    keyring: String,
    key_id: String,
    dek: String,
    wrapped: String,
}

#[test]
fn local_kek_matches_the_python_vectors() {
    let file: LocalVectors = serde_json::from_str(include_str!("vectors/local-kek.json")).unwrap();
    for v in &file.vectors {
        let kek = LocalKek::new(
            &SecretBytes32::from_slice(&hex::decode(&v.master_key).unwrap()).unwrap(),
        );
        let kek_ref = KekRef {
            provider: "local".into(),
            key: v.fingerprint.clone(),
        };
        let ctx = EncryptionContext::new(&v.keyring, &id(&v.key_id));
        let result = kek.unwrap(&kek_ref, &hex::decode(&v.wrapped).unwrap(), &ctx);
        match (v.expect.as_str(), result) {
            ("ok", Ok(dek)) => {
                assert_eq!(hex::encode(dek.expose_secret()), v.dek, "{}", v.name);
                assert_eq!(kek.fingerprint(), v.fingerprint);
                // Re-wrapping with the vector's nonce gives the vector's bytes.
                let wrapped = hex::decode(&v.wrapped).unwrap();
                let nonce: [u8; 12] = wrapped[1..13].try_into().unwrap();
                assert_eq!(
                    kek.wrap_with_nonce(&dek, &ctx, nonce).unwrap(),
                    wrapped,
                    "{}",
                    v.name
                );
            }
            ("wrong_context" | "tampered", Err(KekError::Unwrap { .. })) => {}
            ("wrong_master_key", Err(KekError::WrongMasterKey { .. })) => {}
            (expect, got) => panic!("{}: expected {expect}, got {got:?}", v.name),
        }
    }
}

#[test]
fn master_keys_parse_from_hex_base64_and_files() {
    let hex_key = "5c".repeat(32);
    let b64 = "XFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFw=";
    let fp = local().fingerprint().to_owned();
    assert_eq!(LocalKek::parse(&hex_key).unwrap().fingerprint(), fp);
    assert_eq!(
        LocalKek::parse(&format!(" {b64}\n")).unwrap().fingerprint(),
        fp
    );
    assert!(matches!(
        LocalKek::parse("abcd"),
        Err(KekError::MasterKey(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("raw"), &MASTER);
    write_private(&dir.path().join("hex"), format!("{hex_key}\n").as_bytes());
    for name in ["raw", "hex"] {
        assert_eq!(
            LocalKek::from_file(&dir.path().join(name))
                .unwrap()
                .fingerprint(),
            fp
        );
    }
    let missing = LocalKek::from_file(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("cannot read"), "{missing}");
    assert_eq!(
        format!("{:?}", local()),
        format!("LocalKek {{ fingerprint: {fp:?}, .. }}")
    );
}

/// Writes a file only its owner may read, as a master key file must be.
fn write_private(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    set_mode(path, 0o600);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_master_key_file_its_group_or_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    write_private(&path, &MASTER);
    for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
        set_mode(&path, mode);
        let err = LocalKek::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("mode {mode:04o}")) && err.contains("chmod 600"),
            "{mode:o}: {err}"
        );
        assert!(!err.contains(&hex(&MASTER)), "{err}");
    }
    for mode in [0o600, 0o400] {
        set_mode(&path, mode);
        LocalKek::from_file(&path).unwrap_or_else(|e| panic!("{mode:o}: {e}"));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn documents_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = init(dir.path());
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&hex::encode(MASTER)));

    let check = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        KeyringDocument::from_json(&serde_json::to_vec(&doc).unwrap())
    };
    assert!(check(&|_| {}).is_ok());
    assert!(matches!(
        check(&|d| d["format"] = "other".into()),
        Err(DocumentError::Format(_))
    ));
    assert!(matches!(
        check(&|d| d["version"] = 2.into()),
        Err(DocumentError::Version(2))
    ));
    assert!(matches!(
        check(&|d| d["name"] = "bad name".into()),
        Err(DocumentError::Name(_))
    ));
    assert!(matches!(
        check(&|d| d["surprise"] = 1.into()),
        Err(DocumentError::Syntax(_))
    ));
    assert!(matches!(
        check(&|d| d["keys"][0]["id"] = "k/1".into()),
        Err(DocumentError::Syntax(_))
    ));
    assert!(matches!(
        check(&|d| d["keys"][0]["state"] = "retired".into()),
        Err(DocumentError::PrimaryCount(0))
    ));
    assert!(matches!(
        check(&|d| {
            let k = d["keys"][0].clone();
            d["keys"].as_array_mut().unwrap().push(k);
        }),
        Err(DocumentError::DuplicateId(_))
    ));
    assert!(matches!(
        check(&|d| {
            let mut k = d["keys"][0].clone();
            k["id"] = "k2".into();
            d["keys"].as_array_mut().unwrap().push(k);
        }),
        Err(DocumentError::PrimaryCount(2))
    ));
    assert!(matches!(
        check(&|d| d["keys"][0]["state"] = "destroyed".into()),
        Err(DocumentError::WrappedKey(_))
    ));
    assert!(matches!(
        KeyringDocument::from_json(b"{\"format\": "),
        Err(DocumentError::Syntax(_))
    ));
}

#[test]
fn lifecycle_follows_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    let (k2, written) = ops::add(&path, &keks, None).unwrap();
    assert_eq!(
        written.key("k2"),
        Some(&k2),
        "add returns the keyring as written"
    );
    assert_eq!((k2.id.as_str(), k2.state), ("k2", KeyState::Pending));

    let refused = |r: Result<KeyState, OpError>| match r {
        Err(OpError::Store(StoreError::Refused(DocumentError::Transition { why, .. }))) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // The primary cannot be disabled, retired or destroyed.
    refused(ops::transition(&path, "k1", Transition::Disable));
    refused(ops::transition(&path, "k1", Transition::Retire));
    refused(ops::transition(&path, "k1", Transition::Destroy));
    // Destroy needs disable first; enable needs disabled.
    refused(ops::transition(&path, "k2", Transition::Destroy));
    refused(ops::transition(&path, "k2", Transition::Enable));
    assert!(matches!(
        ops::transition(&path, "k9", Transition::Promote),
        Err(OpError::Store(StoreError::Refused(
            DocumentError::UnknownKey(_)
        )))
    ));

    assert_eq!(
        ops::transition(&path, "k2", Transition::Promote).unwrap(),
        KeyState::Primary
    );
    let doc = tcodec_keys::store::read(&path).unwrap();
    assert_eq!(doc.key("k1").unwrap().state, KeyState::Retired);
    assert_eq!(
        ops::transition(&path, "k1", Transition::Disable).unwrap(),
        KeyState::Disabled
    );
    refused(ops::transition(&path, "k1", Transition::Promote));
    assert_eq!(
        ops::transition(&path, "k1", Transition::Enable).unwrap(),
        KeyState::Retired
    );
    ops::transition(&path, "k1", Transition::Disable).unwrap();
    assert_eq!(
        ops::transition(&path, "k1", Transition::Destroy).unwrap(),
        KeyState::Destroyed
    );
    let doc = tcodec_keys::store::read(&path).unwrap();
    assert!(doc.key("k1").unwrap().wrapped_dek.is_none());
    refused(ops::transition(&path, "k1", Transition::Enable));
    // Each write bumped the revision: init, add, promote, disable, enable, disable, destroy.
    assert_eq!(doc.revision(), 7);

    let (k3, _) = ops::rotate(&path, &keks, None).unwrap();
    assert_eq!((k3.id.as_str(), k3.state), ("k3", KeyState::Primary));
    assert!(matches!(
        ops::init(&path, "payments", &keks, &k3.kek),
        Err(OpError::Store(StoreError::Exists(_)))
    ));
}

#[test]
fn data_keys_are_unwrapped_once_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = init(dir.path());
    let (counting, keks) = counting_keks();
    ops::rotate(&path, &keks, None).unwrap();
    ops::rotate(&path, &keks, None).unwrap();
    let ring = FileKeyring::open(&path, keks).unwrap();
    for _ in 0..1000 {
        for k in ["k1", "k2", "k3"] {
            assert_eq!(ring.key(&id(k)).unwrap().id().as_str(), k);
        }
        assert_eq!(ring.primary().unwrap().id().as_str(), "k3");
    }
    assert_eq!(counting.unwraps.load(Ordering::SeqCst), 3);
}

#[test]
fn the_in_memory_view_never_reads_the_file_or_unwraps() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = init(dir.path());
    let (counting, keks) = counting_keks();
    ops::rotate(&path, &keks, None).unwrap();
    let ring = FileKeyring::open(&path, keks.clone()).unwrap();
    let memory = ring.in_memory();
    // Nothing unwrapped yet: the view says so and leaves the KMS alone.
    assert!(matches!(memory.primary(), Err(KeyError::NotInMemory(k)) if k == "k2"));
    assert!(matches!(
        memory.key(&id("k1")),
        Err(KeyError::NotInMemory(_))
    ));
    assert_eq!(counting.unwraps.load(Ordering::SeqCst), 0);
    // Once the keyring has unwrapped them, the view answers with the same keys.
    assert_eq!(ring.primary().unwrap().id().as_str(), "k2");
    assert_eq!(memory.primary().unwrap().id().as_str(), "k2");
    assert!(memory.key(&id("k1")).is_err());
    ring.key(&id("k1")).unwrap();
    assert_eq!(memory.key(&id("k1")).unwrap().id().as_str(), "k1");
    assert_eq!(counting.unwraps.load(Ordering::SeqCst), 2);
    // A key id the file gained since: the view does not look for it.
    ops::add(&path, &keks, None).unwrap();
    assert!(matches!(
        memory.key(&id("k3")),
        Err(KeyError::NotInMemory(_))
    ));
    assert_eq!(ring.generation(), 0, "the view read the file");
    // States are checked as the keyring checks them.
    ops::transition(&path, "k1", Transition::Disable).unwrap();
    ring.reload().unwrap();
    assert!(matches!(memory.key(&id("k1")), Err(KeyError::Disabled(_))));
}

#[test]
fn states_in_the_file_gate_decryption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    ops::rotate(&path, &keks, None).unwrap();
    let ring = FileKeyring::open(&path, keks.clone()).unwrap();
    assert!(ring.key(&id("k1")).is_ok());

    ops::transition(&path, "k1", Transition::Disable).unwrap();
    ring.reload().unwrap();
    assert!(matches!(ring.key(&id("k1")), Err(KeyError::Disabled(_))));
    ops::transition(&path, "k1", Transition::Enable).unwrap();
    ring.reload().unwrap();
    assert!(ring.key(&id("k1")).is_ok());
    ops::transition(&path, "k1", Transition::Disable).unwrap();
    ops::transition(&path, "k1", Transition::Destroy).unwrap();
    ring.reload().unwrap();
    assert!(matches!(ring.key(&id("k1")), Err(KeyError::Destroyed(_))));
}

#[test]
fn an_unknown_key_id_reloads_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    let ring = FileKeyring::open(&path, keks.clone()).unwrap();
    // Another process adds k2; this reader has no watcher running.
    ops::add(&path, &keks, None).unwrap();
    assert_eq!(ring.generation(), 0);
    assert!(ring.key(&id("k2")).is_ok());
    assert_eq!(ring.generation(), 1);
    assert!(matches!(ring.key(&id("k7")), Err(KeyError::Unknown(_))));
}

#[test]
fn the_watcher_picks_up_changes_and_keeps_the_last_good_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    let ring = FileKeyring::open(&path, keks.clone()).unwrap();
    let _watcher = ring.watch(Duration::from_millis(20));

    let seen = ring.generation();
    ops::rotate(&path, &keks, None).unwrap();
    assert!(
        ring.wait_for_change(seen, Duration::from_secs(10)),
        "rotation not picked up"
    );
    assert_eq!(ring.primary().unwrap().id().as_str(), "k2");

    // A corrupt file (as a careless hand edit would leave it) is refused.
    let good = std::fs::read(&path).unwrap();
    let seen = ring.generation();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    ring.reload().unwrap_err();
    let error = ring.last_reload_error().unwrap();
    assert!(error.contains("not a valid keyring"), "{error}");
    assert_eq!(ring.generation(), seen);
    assert_eq!(ring.primary().unwrap().id().as_str(), "k2");
    assert!(ring.key(&id("k1")).is_ok());

    // Garbage likewise; and an older revision is not taken either.
    std::fs::write(&path, b"\x00\x01garbage").unwrap();
    assert!(ring.reload().is_err());
    assert_eq!(ring.primary().unwrap().id().as_str(), "k2");

    // Repaired: the watcher takes the file again and clears the error.
    std::fs::write(&path, &good).unwrap();
    ops::rotate(&path, &keks, None).unwrap();
    assert!(
        ring.wait_for_change(seen, Duration::from_secs(10)),
        "repair not picked up"
    );
    assert_eq!(ring.primary().unwrap().id().as_str(), "k3");
    assert_eq!(ring.last_reload_error(), None);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    ops::add(&path, &keks, None).unwrap();
                }
            });
        }
    });
    let doc = tcodec_keys::store::read(&path).unwrap();
    assert_eq!(doc.keys().len(), 21);
    assert_eq!(doc.revision(), 21);
    let ids: std::collections::BTreeSet<_> = doc.keys().iter().map(|k| k.id.to_string()).collect();
    assert_eq!(ids.len(), 21);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_keyring_under_another_master_key_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = init(dir.path());
    let other = Keks::new().with(Arc::new(LocalKek::new(&SecretBytes32::new([1; 32]))));
    let ring = FileKeyring::open(&path, other).unwrap();
    let err = ring.key(&id("k1")).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("wrapped by local master key"), "{text}");
    let none = FileKeyring::open(&path, Keks::new()).unwrap();
    let err = none.primary().unwrap_err();
    let text = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        text.contains("no local key-encryption key is configured"),
        "{text}"
    );
}

#[test]
fn rewrap_to_a_new_master_key_keeps_every_data_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    ops::rotate(&path, &keks, None).unwrap();
    let before = FileKeyring::open(&path, keks.clone()).unwrap();
    let old: Vec<[u8; 32]> = ["k1", "k2"]
        .iter()
        .map(|k| *before.key(&id(k)).unwrap().secret().expose_secret())
        .collect();

    // A new master key, under a new provider instance. Both must be reachable
    // for the move; afterwards only the new one is needed.
    let new_kek = Arc::new(LocalKek::new(&SecretBytes32::new([0x77; 32])));
    let new_ref = new_kek.kek_ref(None).unwrap();
    // Two local keys at once are two providers of one name; rewrap across them
    // goes through a keyring that unwraps with the old and wraps with the new.
    let moved = ops::rewrap(
        &path,
        &Keks::new().with(Arc::new(Both {
            old: local(),
            new: new_kek.clone(),
        })),
        &new_ref,
    )
    .unwrap();
    assert_eq!(moved.len(), 2);

    let after = FileKeyring::open(&path, Keks::new().with(new_kek)).unwrap();
    for (k, secret) in ["k1", "k2"].iter().zip(&old) {
        assert_eq!(after.key(&id(k)).unwrap().secret().expose_secret(), secret);
    }
    let stale = FileKeyring::open(&path, keks).unwrap();
    assert!(matches!(
        stale.key(&id("k1")),
        Err(KeyError::Unavailable { .. })
    ));
}

/// Two local master keys behind one provider: the old one unwraps, the new one wraps.
#[derive(Debug)]
struct Both {
    old: Arc<LocalKek>,
    new: Arc<LocalKek>,
}

impl KekProvider for Both {
    fn provider(&self) -> &'static str {
        "local"
    }
    fn kek_ref(&self, key: Option<&str>) -> Result<KekRef, KekError> {
        self.new.kek_ref(key)
    }
    fn generate(
        &self,
        kek: &KekRef,
        ctx: &EncryptionContext,
    ) -> Result<(SecretBytes32, Vec<u8>), KekError> {
        self.new.generate(kek, ctx)
    }
    fn wrap(
        &self,
        kek: &KekRef,
        dek: &SecretBytes32,
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KekError> {
        self.new.wrap(kek, dek, ctx)
    }
    fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<SecretBytes32, KekError> {
        if kek.key == self.old.fingerprint() {
            self.old.unwrap(kek, wrapped, ctx)
        } else {
            self.new.unwrap(kek, wrapped, ctx)
        }
    }
}

#[test]
fn key_material_is_zeroized_on_drop_and_never_printed() {
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    // Dropping these wipes their bytes (the derive is the mechanism; this
    // fails to compile if it is ever removed).
    zeroized_on_drop::<SecretBytes32>();
    let mut secret = SecretBytes32::new([0xA5; 32]);
    zeroize::Zeroize::zeroize(&mut secret);
    assert_eq!(secret.expose_secret(), &[0u8; 32]);

    let key = SecretBytes32::new([0x42; 32]);
    let data_key = tcodec_keys::DataKey::new(id("k1"), key.clone());
    let legacy = tcodec_keys::LegacyKey::new("legacy-1", key);
    let kek = LocalKek::parse(&"42".repeat(32)).unwrap();
    for printed in [
        format!("{data_key:?}"),
        format!("{legacy:?}"),
        format!("{kek:?}"),
        format!("{:?}", SecretBytes32::new([0x42; 32])),
    ] {
        assert!(
            !printed.contains("42, 42") && !printed.contains("4242"),
            "{printed}"
        );
        assert!(
            !printed.to_lowercase().contains("qkjc"),
            "base64 of the key in {printed}"
        );
    }
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

#[test]
fn a_new_keyring_is_its_owners_alone_and_a_rotation_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    assert_eq!(mode_and_owner(&path).0, 0o600);
    // An operator opened it to the server's group.
    set_mode(&path, 0o640);
    ops::rotate(&path, &keks, None).unwrap();
    assert_eq!(mode_and_owner(&path).0, 0o640);
}

#[test]
fn a_rotation_keeps_the_keyrings_owner_and_group() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    assert_eq!(
        std::fs::metadata(&path).unwrap().uid(),
        0,
        "this test gives the keyring another owner, which needs root (CI runs as root)"
    );
    std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
    set_mode(&path, 0o640);
    ops::rotate(&path, &keks, None).unwrap();
    assert_eq!(mode_and_owner(&path), (0o640, 4242, 4343));
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keks, _) = init(dir.path());
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // Whoever may write the directory swaps the lock file for a symlink.
    let lock = dir.path().join("keyring.json.lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = ops::rotate(&path, &keks, None).unwrap_err();
    let text = format!("{err}");
    assert!(text.contains("symlink"), "{text}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the keyring changed");
}
