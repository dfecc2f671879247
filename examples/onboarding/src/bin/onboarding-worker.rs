//! The reference worker: polls the onboarding task queue with tcodec as its
//! codec. Configured by the environment: `TEMPORAL_ADDRESS`,
//! `TEMPORAL_NAMESPACE`, `TCODEC_KEYRING`, `TCODEC_MASTER_KEY_FILE` or
//! `TCODEC_MASTER_KEY`, AWS settings for KMS keyrings.
#![allow(clippy::print_stdout)]

use tcodec_keys::FileKeyring;
use tcodec_onboarding::{self as onboarding, Error, TASK_QUEUE};
use tcodec_worker::WorkerCodec;
use temporalio_sdk::{Runtime, Worker};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tcodec = WorkerCodec::from_env().map_err(|e| format!("cannot set up tcodec: {e}"))?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let (address, namespace) = onboarding::target_from_env();
    let client = onboarding::connect(&address, &namespace, tcodec.data_converter()).await?;
    let mut worker = Worker::new(&runtime, client, onboarding::worker_options()?)?;
    let shutdown = worker.shutdown_handle();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        shutdown();
    });
    println!(
        "onboarding worker polling task queue {TASK_QUEUE} (keyring {})",
        tcodec.keyring().path().display()
    );
    announce_keyring_changes(tcodec.keyring().clone());
    worker.run().await?;
    println!("onboarding worker stopped");
    Ok(())
}

/// Says which keyring revision and primary key the worker uses, at start and
/// whenever the watcher takes a changed keyring file into use (`tcodec keys
/// add`, `promote`, `rotate`), so an operator sees a rotation arrive.
fn announce_keyring_changes(keyring: FileKeyring) {
    let say = |keyring: &FileKeyring| {
        let doc = keyring.document();
        let primary = doc.primary().map(|k| k.id.to_string());
        println!(
            "keyring {:?} revision {} in use, primary key {}",
            doc.name(),
            doc.revision(),
            primary.as_deref().unwrap_or("(none)")
        );
    };
    say(&keyring);
    let spawned = std::thread::Builder::new()
        .name("keyring-announce".into())
        .spawn(move || {
            let mut seen = keyring.generation();
            loop {
                if keyring.wait_for_change(seen, std::time::Duration::from_secs(3600)) {
                    seen = keyring.generation();
                    say(&keyring);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("cannot announce keyring changes: {e}");
    }
}
