//! Shared fixtures: a real KMS-protocol server (moto) on loopback, and the
//! `tcodec` binary run with a clean environment. The codec server's own tests
//! (`codec-server/tests/`) use the in-process fixtures here too, by path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

#[path = "../../../tests/support/common.rs"]
mod common;
// Not every test that includes these fixtures uses every one.
#[allow(unused_imports)]
pub use common::{Moto, free_port, on_free_port, repo_root, venv_bin, wait_listening};

/// The `tcodec` binary. Cargo names it to the tests of the package that builds
/// it (tcodec-cli); other packages that share these fixtures never run it.
pub fn tcodec_bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_tcodec") {
        Some(path) => path,
        None => panic!("the tcodec binary is known only to tcodec-cli's tests"),
    }
}

/// How to run `tcodec`: which keyring, which KEKs, which KMS.
pub struct Tcodec {
    pub keyring: PathBuf,
    pub master_key: Option<String>,
    pub kms_endpoint: Option<String>,
    /// The KMS keys keyrings may name (`TCODEC_KMS_KEYS`).
    pub kms_keys: Vec<String>,
    home: PathBuf,
}

impl Tcodec {
    pub fn new(dir: &Path) -> Self {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self {
            keyring: dir.join("keyring.json"),
            master_key: None,
            kms_endpoint: None,
            kms_keys: Vec::new(),
            home,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tcodec_bin());
        // A clean environment: no stray AWS settings, no instance metadata lookups.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TCODEC_KEYRING", &self.keyring)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args);
        if let Some(key) = &self.master_key {
            cmd.env("TCODEC_MASTER_KEY", key);
        }
        if !self.kms_keys.is_empty() {
            cmd.env("TCODEC_KMS_KEYS", self.kms_keys.join(","));
        }
        if let Some(endpoint) = &self.kms_endpoint {
            cmd.env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
        }
        cmd
    }

    /// Runs `tcodec args…` with `stdin`, returning its output whatever the status.
    pub fn run_with(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that exits without reading its input closes the pipe first.
        if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
        child.wait_with_output().unwrap()
    }

    /// Runs `tcodec args…` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, "")
    }

    pub fn ok_with(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_with(args, stdin);
        assert!(
            out.status.success(),
            "tcodec {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `tcodec args…`, requires failure, returns stderr.
    pub fn fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_with(args, stdin);
        assert!(
            !out.status.success(),
            "tcodec {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn document(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&self.keyring).unwrap()).unwrap()
    }

    pub fn states(&self) -> Vec<(String, String)> {
        self.document()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["id"].as_str().unwrap().to_owned(),
                    k["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// A `{"payloads": [...]}` body of JSON payloads holding `texts`.
pub fn plain_batch(texts: &[&str]) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let payloads: Vec<_> = texts
        .iter()
        .map(|t| serde_json::json!({"metadata": {"encoding": b64("json/plain")}, "data": b64(t)}))
        .collect();
    serde_json::json!({ "payloads": payloads }).to_string()
}

/// One base64 field of each payload in a response, decoded as text; a
/// payload without it counts as empty.
fn each_payload(
    response: &str,
    field: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> Vec<String> {
    use base64::Engine;
    let v: serde_json::Value = serde_json::from_str(response).unwrap();
    v["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(field(p).as_str().unwrap_or(""))
                .unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

/// The data of each payload in a response, as text.
pub fn texts(response: &str) -> Vec<String> {
    each_payload(response, |p| &p["data"])
}

/// The key id each payload of a response names.
pub fn key_ids(response: &str) -> Vec<String> {
    each_payload(response, |p| &p["metadata"]["tcodec-key-id"])
}

pub mod server;
pub mod zlib_bomb;
// The Temporal dev server helper is shared with the end-to-end tests in tests/.
#[path = "../../../tests/support/temporal.rs"]
pub mod temporal;

/// A TCP forwarder on 127.0.0.1 in front of another local server, which can
/// be taken down (refusing connections, cutting open ones) and brought back on
/// the same port: a network outage between a client and its server.
pub struct Outage {
    pub port: u16,
    target: String,
    up: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Outage {
    pub fn new(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut me = Self {
            port: listener.local_addr().unwrap().port(),
            target: target.to_owned(),
            up: None,
        };
        me.forward(listener);
        me
    }

    /// Starts forwarding again, on the same port.
    pub fn restore(&mut self) {
        self.forward(TcpListener::bind(("127.0.0.1", self.port)).unwrap());
    }

    fn forward(&mut self, listener: TcpListener) {
        use std::sync::atomic::{AtomicBool, Ordering};
        assert!(self.up.is_none());
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (target, flag) = (self.target.clone(), std::sync::Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server.try_clone().unwrap(), client.try_clone().unwrap()),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Write);
                            });
                        }
                        open.extend([client, server]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            for stream in open {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        self.up = Some((stop, thread));
    }

    /// Stops forwarding: new connections are refused, open ones are cut.
    pub fn cut(&mut self) {
        if let Some((stop, thread)) = self.up.take() {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            thread.join().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `tcodec decode --lines`, running: one batch per line in, one answer per
/// line out, keys cached between batches.
pub struct LineDecoder {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl LineDecoder {
    pub fn start(t: &Tcodec) -> Self {
        let mut child = t
            .command(&["decode", "--lines"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one `{"payloads": [...]}` batch (any JSON layout); returns the answer line.
    pub fn ask(&mut self, batch: &str) -> String {
        use std::io::BufRead;
        let compact = serde_json::from_str::<serde_json::Value>(batch)
            .unwrap()
            .to_string();
        writeln!(self.stdin, "{compact}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// Closes its input and requires a clean exit.
    pub fn finish(self) {
        let Self {
            mut child,
            stdin,
            stdout,
        } = self;
        drop(stdin);
        drop(stdout);
        assert!(child.wait().unwrap().success());
    }
}

/// Writes a file only its owner may read, as a master key file must be.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
