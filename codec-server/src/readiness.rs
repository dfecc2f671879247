//! Readiness, computed off the request path: a background task checks every
//! namespace's keyring (its primary key usable, its file accepted) and the
//! JWKS, on a blocking thread since a key may need KMS, and caches the
//! report. `/readyz` only reads the cache, so probes cost no KMS call and no
//! blocking, however many arrive, and answer a status and counts only: the
//! problems themselves (namespaces, key ARNs, KMS error chains) go to the log
//! when they change, not to whoever asks.
//!
//! Checks run every [`INTERVAL`] while ready; after a failed check the next
//! waits twice as long as the last, up to [`MAX_BACKOFF`], so KMS sees at
//! most one call per backoff period from readiness, whatever the probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use tcodec::display_chain as chain;
use tcodec_keys::KeySource;

use crate::app::AppState;

/// Time between checks while ready.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The longest wait between checks while not ready.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the last check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether any check has finished yet.
    pub checked: bool,
    /// What makes the server unready.
    pub problems: Vec<String>,
    /// What an operator should look at although the server is ready.
    pub warnings: Vec<String>,
}

impl Report {
    /// Checked, and no problem found.
    pub fn ready(&self) -> bool {
        self.checked && self.problems.is_empty()
    }
}

/// The cached report and whether its task runs.
#[derive(Debug, Default)]
pub struct Readiness {
    report: RwLock<Report>,
    started: AtomicBool,
}

impl Readiness {
    /// The last report.
    pub fn report(&self) -> Report {
        self.report
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, report: Report) {
        *self.report.write().unwrap_or_else(PoisonError::into_inner) = report;
    }
}

impl AppState {
    /// Checks readiness now: every keyring's primary key (unwrapping it if
    /// need be, on a blocking thread) and last reload, and the JWKS.
    pub async fn check_readiness(self: &Arc<Self>) -> Report {
        let state = Arc::clone(self);
        let keyrings = tokio::task::spawn_blocking(move || {
            let mut problems = Vec::new();
            let mut warnings = Vec::new();
            for (name, ns) in &state.namespaces {
                if let Err(e) = ns.keyring.primary() {
                    problems.push(format!("namespace {name}: {}", chain(&e)));
                }
                if let Some(e) = ns.keyring.last_reload_error() {
                    warnings.push(format!(
                        "namespace {name}: the keyring file was rejected, the last good keyring is in use: {e}"
                    ));
                }
            }
            (problems, warnings)
        })
        .await;
        let (mut problems, warnings) = keyrings
            .unwrap_or_else(|e| (vec![format!("the readiness check failed: {e}")], Vec::new()));
        if !self.auth.ready().await {
            problems.push("the JWKS has not been fetched".into());
        }
        Report {
            checked: true,
            problems,
            warnings,
        }
    }

    /// Starts the background check, once; later calls do nothing. Needs a
    /// Tokio runtime. The task ends when the state is dropped.
    pub fn start_readiness(self: &Arc<Self>) {
        if self.readiness.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(readiness_loop(weak));
    }
}

async fn readiness_loop(state: Weak<AppState>) {
    let mut backoff = INTERVAL;
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        let report = strong.check_readiness().await;
        let last = strong.readiness.report();
        if (&report.problems, &report.warnings) != (&last.problems, &last.warnings) || !last.checked
        {
            log_change(&report);
        }
        let wait = if report.ready() {
            backoff = INTERVAL;
            INTERVAL
        } else {
            let wait = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            wait
        };
        strong.readiness.store(report);
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}

fn log_change(report: &Report) {
    if report.ready() {
        tracing::info!(warnings = ?report.warnings, "ready");
    } else {
        tracing::warn!(problems = ?report.problems, warnings = ?report.warnings, "not ready");
    }
}
