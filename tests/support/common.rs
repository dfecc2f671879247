//! What every test fixture needs: the repository root, free loopback ports,
//! the tools `scripts/setup.sh` installs into `.venv`, a KMS- and
//! S3-protocol server (moto) on loopback. Shared by path with the
//! binary's tests (`cli/tests/support`).

#![allow(dead_code)] // each test binary that includes this uses part of it

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (every test package sits one folder below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tool from the project's venv, which must be there.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh, which installs the test tools into .venv",
        path.display()
    );
    path
}

/// `moto_server` on 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        // Run in its own directory: its request recorder writes a file there.
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start moto_server");
        let mut moto = Self {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        // Wait for it to accept connections (or fail loudly).
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("moto_server exited ({status}): {}", moto.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a boto3 snippet against this server; `kms` and `s3` are its
    /// clients. Returns stdout.
    pub fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3\nclient = lambda service: boto3.client(service, endpoint_url='{}', \
             region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             kms, s3 = client('kms'), client('s3')\n{code}",
            self.endpoint
        );
        let out = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Starts (or restarts) moto's request recorder, empty.
    pub fn start_recording(&self) {
        self.boto3(
            "import urllib.request\nfor action in ['reset-recording', 'start-recording']:\n    \
             urllib.request.urlopen(urllib.request.Request(\
             kms.meta.endpoint_url + '/moto-api/recorder/' + action, method='POST')).read()",
        );
    }

    /// The requests recorded since [`Moto::start_recording`]: for each, its
    /// operation (`X-Amz-Target`) and body, on one line.
    pub fn recorded(&self) -> Vec<String> {
        let out = self.boto3(
            "import base64, json, urllib.request\n\
             text = urllib.request.urlopen(kms.meta.endpoint_url + '/moto-api/recorder/download-recording').read().decode()\n\
             for line in filter(None, text.splitlines()):\n    r = json.loads(line)\n    \
             body = base64.b64decode(r['body']).decode() if r.get('body_encoded') else (r['body'] or '')\n    \
             print(r['headers'].get('X-Amz-Target', r['url']), body.replace('\\n', ' '))",
        );
        out.lines().map(str::to_owned).collect()
    }

    /// Creates a symmetric KMS key; returns its key id.
    pub fn create_key(&self) -> String {
        self.boto3("print(kms.create_key()['KeyMetadata']['KeyId'])")
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
