//! Fixtures for the codec server's tests: a keyring under a local master key,
//! a configuration, the router in-process, a JWKS served on loopback, tokens,
//! and test certificates made by `gen_test_keys.py`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tcodec_keys::kek::KekProvider;
use tcodec_keys::kek::Keks;
use tcodec_keys::kek::local::LocalKek;
use tcodec_server::config::Config;
use tcodec_server::{AppState, app};
use tower::ServiceExt;

use super::repo_root;

/// A master key for tests (64 hex digits).
pub const MASTER_KEY_HEX: &str = "8f1c2a7e5b9d04f6a3c8e1b7d2f90a4c6e3b5d7f1a2c4e6b8d0f2a4c6e8b0d2f";

/// A directory holding a master key file and keyrings for `namespaces`.
pub struct Keyrings {
    pub dir: tempfile::TempDir,
    pub master_key_file: PathBuf,
}

impl Keyrings {
    pub fn new(namespaces: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master_key_file = dir.path().join("master.key");
        super::write_private(&master_key_file, MASTER_KEY_HEX.as_bytes());
        let local = LocalKek::parse(MASTER_KEY_HEX).unwrap();
        let kek = local.kek_ref(None).unwrap();
        let keks = Keks::new().with(Arc::new(local));
        for ns in namespaces {
            tcodec_keys::ops::init(&dir.path().join(format!("{ns}.json")), ns, &keks, &kek)
                .unwrap();
        }
        Self {
            dir,
            master_key_file,
        }
    }

    pub fn keyring(&self, namespace: &str) -> PathBuf {
        self.dir.path().join(format!("{namespace}.json"))
    }

    pub fn keks(&self) -> Keks {
        Keks::new().with(Arc::new(LocalKek::parse(MASTER_KEY_HEX).unwrap()))
    }

    /// The TOML for `[kek]` and one `[namespaces.NAME]` table per namespace,
    /// each with `extra` lines appended.
    pub fn toml(&self, namespaces: &[(&str, &str)]) -> String {
        let mut text = format!(
            "[kek]\nmaster_key_file = {:?}\n",
            self.master_key_file.display().to_string()
        );
        for (ns, extra) in namespaces {
            text.push_str(&format!(
                "[namespaces.{ns}]\nkeyring = {:?}\n{extra}\n",
                self.keyring(ns).display().to_string()
            ));
        }
        text
    }
}

/// Parses and validates `toml`, builds the state and the router.
pub fn router(toml: &str) -> (Router, Arc<AppState>) {
    let config = Config::parse(toml).unwrap();
    config.validate().unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let state = Arc::new(AppState::from_config(&config, provider).unwrap());
    (app(Arc::clone(&state)), state)
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The error code of a JSON error answer.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_owned()
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A codec request as the Temporal UI and CLI make it.
pub fn codec_request(path: &str, namespace: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-namespace", namespace)
}

pub async fn post(
    router: &Router,
    path: &str,
    namespace: &str,
    auth: Option<&str>,
    body: &str,
) -> Answer {
    let mut request = codec_request(path, namespace);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    send(router, request.body(Body::from(body.to_owned())).unwrap()).await
}

/// Runs the test key generator (Python `cryptography`, from the project venv).
pub fn generate(kind: &str, out: &Path) {
    let python = super::venv_bin("python");
    let script = repo_root().join("cli/tests/support/gen_test_keys.py");
    let status = Command::new(python)
        .arg(script)
        .arg(kind)
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "gen_test_keys.py {kind} failed");
}

/// JWT signing keys and their JWKS, served on loopback by a tiny HTTP server.
pub struct Issuer {
    pub dir: tempfile::TempDir,
    pub jwks_url: String,
    rsa: EncodingKey,
    ec: EncodingKey,
    task: tokio::task::JoinHandle<()>,
}

pub const ISSUER: &str = "https://sso.example.test/";
pub const AUDIENCE: &str = "tcodec";

impl Issuer {
    /// Generates keys and serves `jwks.json` at `http://127.0.0.1:PORT/jwks.json`.
    /// Needs a Tokio runtime.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        generate("jwt", dir.path());
        let jwks = std::fs::read_to_string(dir.path().join("jwks.json")).unwrap();
        let rsa =
            EncodingKey::from_rsa_pem(&std::fs::read(dir.path().join("rsa.pem")).unwrap()).unwrap();
        let ec =
            EncodingKey::from_ec_pem(&std::fs::read(dir.path().join("ec.pem")).unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            dir,
            jwks_url,
            rsa,
            ec,
            task,
        }
    }

    /// The `[auth]` TOML for this issuer.
    pub fn auth_toml(&self) -> String {
        format!(
            "[auth]\nmode = \"jwt\"\n[auth.jwt]\njwks_url = {:?}\nissuer = {ISSUER:?}\naudiences = [{AUDIENCE:?}]\n",
            self.jwks_url
        )
    }

    /// Claims valid for an hour, with `extra` merged in.
    pub fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 3600,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    /// A bearer header: RS256 signed by `rsa-1`.
    pub fn bearer(&self, extra: serde_json::Value) -> String {
        self.sign(Algorithm::RS256, "rsa-1", &Self::claims(extra))
    }

    /// `Bearer <token>` signed with the given algorithm and key id.
    pub fn sign(&self, alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let key = match alg {
            Algorithm::RS256 => &self.rsa,
            Algorithm::ES256 => &self.ec,
            other => panic!("no test key for {other:?}"),
        };
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, claims, key).unwrap()
        )
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `tcodec serve` as a child process, with its log captured to a file.
pub struct ServeProcess {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Writes `toml` (which should listen on `127.0.0.1:0`) to a file and
    /// starts `tcodec serve` on it; returns once the server says where it listens.
    pub fn start(toml: &str, env: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn(toml, env);
        let line = server.wait_for_log("listening on ");
        let start = line.find("listening on ").unwrap() + "listening on ".len();
        server.url = line[start..]
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap()
            .to_owned();
        server
    }

    /// Starts `tcodec serve` with the configuration `toml(port)`, which must
    /// listen on plain HTTP at 127.0.0.1:`port`, on a port picked free; returns
    /// once the server listens there (for log levels that do not show the
    /// "listening" line).
    pub fn start_on_free_port(toml: impl Fn(u16) -> String) -> Self {
        super::on_free_port("tcodec serve", |port| {
            let mut server = Self::spawn(&toml(port), &[]);
            let log = server.log.clone();
            super::wait_listening(server.child.as_mut().unwrap(), port, &log)?;
            server.url = format!("http://127.0.0.1:{port}");
            Ok(server)
        })
    }

    fn spawn(toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tcodec.toml");
        std::fs::write(&config, toml).unwrap();
        let log = dir.path().join("serve.log");
        let mut command = Command::new(super::tcodec_bin());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = command.spawn().unwrap();
        Self {
            child: Some(child),
            url: String::new(),
            log,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to a minute) for a log line containing `needle`; returns it.
    /// Fails at once if the server exits first.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tcodec serve exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tcodec serve never logged {needle:?}:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `curl` for HTTP(S) calls to a server in another process; returns
/// (HTTP status, body). A failed connection or handshake gives status 0.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed by scripts/setup.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A codec POST with curl of `body` to `url` in `namespace`, the body read
/// from a file (megabytes do not fit on a command line).
pub fn curl_post_file(url: &str, namespace: &str, body: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("X-Namespace: {namespace}"),
        "--data-binary",
        &format!("@{}", file.display()),
        url,
    ])
}

/// Arguments for a codec POST with curl.
pub fn curl_post(url: &str, namespace: &str, body: &str) -> Vec<String> {
    vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-H".into(),
        format!("X-Namespace: {namespace}"),
        "--data-binary".into(),
        body.to_owned(),
        url.to_owned(),
    ]
}
