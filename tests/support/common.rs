//! What every test fixture needs: the repository root, free loopback ports,
//! the tools `scripts/setup.sh` installs into `.venv`, a KMS- and
//! S3-protocol server (moto) on loopback. Shared by path with the
//! binary's tests (`cli/tests/support`).

#![allow(dead_code)] // each test binary that includes this uses part of it

use std::net::TcpListener;
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

/// A port on 127.0.0.1 nothing listens on right now. Another process may take
/// it before the server it is meant for binds it: start servers on one with
/// [`on_free_port`] and wait for them with [`wait_listening`].
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How often a server is started again when the port picked for it was taken.
const PORT_ATTEMPTS: usize = 5;

/// Starts a server told its port on its command line: `start(port)` with a
/// port picked free, returning the server or, if it exited, its log. Between
/// the pick and the server's bind another process can take the port (each
/// outgoing connection takes one from the same range); when the server's log
/// says so, it is started again on a fresh port. Any other exit fails the test
/// with the log.
pub fn on_free_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut attempt = 1;
    loop {
        match start(free_port()) {
            Ok(server) => return server,
            Err(log)
                if attempt < PORT_ATTEMPTS
                    && log.to_lowercase().contains("address already in use") =>
            {
                attempt += 1;
            }
            Err(log) => panic!("{what} did not start: {log}"),
        }
    }
}

/// Waits until `child` itself listens on 127.0.0.1:`port`. A connection that
/// succeeds proves nothing here: it may reach whoever took the port first.
/// Returns `Err` with the log at `log` if the child exits first.
pub fn wait_listening(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !listens_on(child.id(), port) {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited ({status}):\n{text}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "process {} never listened on port {port}: {}",
                child.id(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether process `pid` holds a socket listening on TCP port `port` (Linux:
/// the listening sockets in /proc/net/tcp{,6} matched to the process's
/// descriptors).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let local = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local_address, state (0A: LISTEN), inode
                    (fields.len() > 9 && fields[1].ends_with(&local) && fields[3] == "0A")
                        .then(|| format!("socket:[{}]", fields[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
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
        on_free_port("moto_server", |port| {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("moto.log");
            // Run in its own directory: its request recorder writes a file there.
            let mut child = Command::new(venv_bin("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start moto_server");
            wait_listening(&mut child, port, &log)?;
            Ok(Self {
                child: Some(child),
                endpoint: format!("http://127.0.0.1:{port}"),
                log,
                _dir: dir,
            })
        })
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
