//! Fixtures of the end-to-end tests: the Temporal dev server, an in-process
//! tcodec worker and codec server, keyrings under a local master key.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tcodec_keys::kek::local::LocalKek;
use tcodec_keys::kek::{KekSettings, Keks};
use tokio::sync::oneshot;

mod common;
pub mod temporal;

// Not every test that includes these fixtures uses every one.
#[allow(unused_imports)]
pub use common::{free_port, on_free_port, repo_root, venv_bin, wait_listening};

/// A master key for tests (64 hex digits).
pub const MASTER_KEY_HEX: &str = "5be1a3c9d7f2e4b6a8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4";

/// A directory with a master key file and a keyring for namespace `default`.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub master_key_file: PathBuf,
    pub keyring: PathBuf,
}

impl Keys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master_key_file = dir.path().join("master.key");
        std::fs::write(&master_key_file, MASTER_KEY_HEX).unwrap();
        // Only its owner may read a master key file.
        std::fs::set_permissions(
            &master_key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let keyring = dir.path().join("default.json");
        let keks = Self::keks();
        let kek = keks.named("local").unwrap().kek_ref(None).unwrap();
        tcodec_keys::ops::init(&keyring, "default", &keks, &kek).unwrap();
        Self {
            dir,
            master_key_file,
            keyring,
        }
    }

    pub fn keks() -> Keks {
        Keks::new().with(Arc::new(LocalKek::parse(MASTER_KEY_HEX).unwrap()))
    }

    pub fn settings(&self) -> KekSettings {
        KekSettings {
            master_key_file: Some(self.master_key_file.clone()),
            ..KekSettings::default()
        }
    }

    /// Rotates the keyring file (add + promote); returns the new key id.
    pub fn rotate(&self) -> String {
        let (version, _) = tcodec_keys::ops::rotate(&self.keyring, &Self::keks(), None).unwrap();
        version.id.to_string()
    }
}

/// The reference onboarding worker, running in this process on its own
/// thread and runtime, against keyring `keyring`. Dropping it shuts it down.
pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), tcodec_onboarding::Error>>>,
}

impl Worker {
    pub fn start(address: &str, keyring: &Path, settings: &KekSettings) -> Self {
        Self::start_allowing(address, keyring, settings, "")
    }

    /// Like [`Worker::start`], with a decode policy allowing `allow` (as
    /// `TCODEC_DECODE_ALLOW` names it).
    pub fn start_allowing(
        address: &str,
        keyring: &Path,
        settings: &KekSettings,
        allow: &str,
    ) -> Self {
        let options = tcodec::CodecOptions::default()
            .with_decode_policy(tcodec_worker::decode_policy_from(allow));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (address, keyring, settings) =
            (address.to_owned(), keyring.to_owned(), settings.clone());
        let thread = std::thread::spawn(move || -> Result<(), tcodec_onboarding::Error> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let setup = async {
                    let codec =
                        tcodec_worker::WorkerCodec::open_with(&keyring, &settings, options)?;
                    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
                    let client =
                        tcodec_onboarding::connect(&address, "default", codec.data_converter())
                            .await?;
                    let worker = temporalio_sdk::Worker::new(
                        &runtime,
                        client,
                        tcodec_onboarding::worker_options()?,
                    )?;
                    Ok::<_, tcodec_onboarding::Error>((worker, runtime, codec))
                };
                let (mut worker, _runtime, _codec) = match setup.await {
                    Ok(parts) => parts,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                let shutdown = worker.shutdown_handle();
                tokio::spawn(async move {
                    let _ = stop_rx.await;
                    shutdown();
                });
                let _ = ready_tx.send(Ok(()));
                worker.run().await?;
                Ok(())
            })
        });
        if let Err(e) = ready_rx.recv().unwrap() {
            panic!("the worker did not start: {e}");
        }
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The codec server (`tcodec_server`'s router on a loopback socket) serving
/// namespace `default` from `keyring`, on a runtime of its own.
pub struct CodecServer {
    pub url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CodecServer {
    pub fn start(keyring: &Path, master_key_file: &Path) -> Self {
        Self::start_with(keyring, master_key_file, "")
    }

    /// Like [`CodecServer::start`], with `namespace` (TOML lines) added to
    /// namespace `default`'s table.
    pub fn start_with(keyring: &Path, master_key_file: &Path, namespace: &str) -> Self {
        let toml = format!(
            "[kek]\nmaster_key_file = {:?}\n[namespaces.default]\nkeyring = {:?}\n{namespace}\n",
            master_key_file.display().to_string(),
            keyring.display().to_string()
        );
        let config = tcodec_server::config::Config::parse(&toml).unwrap();
        config.validate().unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let state = Arc::new(tcodec_server::AppState::from_config(&config, provider).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(tcodec_server::serve::serve(
            listener,
            None,
            tcodec_server::app(state),
            tcodec_server::serve::ConnectionLimits::default(),
            std::future::pending(),
        ));
        Self {
            url,
            runtime: Some(runtime),
        }
    }
}

impl Drop for CodecServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
