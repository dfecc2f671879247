//! The codec server's configuration: one TOML file, a few environment
//! overrides, validated at start with errors that name the bad field.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//!
//! [tls]                       # omit for plain HTTP (allowed on loopback only)
//! cert = "/etc/tcodec/tls.crt"
//! key = "/etc/tcodec/tls.key"
//! client_ca = "/etc/tcodec/clients-ca.pem"   # optional: require client certificates (mTLS)
//!
//! [cors]
//! origins = ["https://cloud.temporal.io", "http://localhost:8233"]
//! allow_credentials = false
//!
//! [auth]
//! mode = "jwt"                # "jwt", "proxy", "mtls" or "none" (loopback only)
//! [auth.jwt]
//! jwks_url = "https://login.tmprl.cloud/.well-known/jwks.json"
//! issuer = "…"               # required: the `iss` your tokens carry
//! audiences = ["https://saas-api.tmprl.cloud"]
//!
//! [kek]
//! master_key_file = "/etc/tcodec/master.key"    # for keyrings under a local master key
//! kms_keys = ["arn:aws:kms:eu-west-1:111122223333:key/…"]   # KMS keys keyrings may name
//!
//! [namespaces.payments]
//! keyring = "/etc/tcodec/payments.json"
//! allowed_emails = ["ada@example.com"]           # optional: who may decode
//! encode_emails = ["deploy-bot@example.com"]      # optional: who may encode (and decode)
//!
//! [namespaces.payments.storage]                   # optional: External Storage (S3)
//! bucket = "payments-temporal-payloads"
//! region = "eu-west-1"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tcodec::DecodePolicy;
use tcodec::legacy::{ENCODING_ENCRYPTED, ENCODING_ZLIB};
use tcodec_keys::kek::KekSettings;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has fields of the wrong type or unknown fields.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the field.
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The field, as a TOML path.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Env: `TCODEC_LISTEN`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS; without it the server speaks plain HTTP, which is allowed only on a
    /// loopback address.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Cross-origin rules for the Temporal Web UI.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Who may call.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Key-encryption keys for the keyrings.
    #[serde(default)]
    pub kek: KekSettings,
    /// Namespaces served, by name.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

/// TLS settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate they signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// CORS settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins allowed, e.g. `http://localhost:8233`. `*` is refused.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (for the UI's "include
    /// cross-origin credentials" setting).
    #[serde(default)]
    pub allow_credentials: bool,
}

impl CorsConfig {
    /// Whether `origin` (an `Origin` header's bytes) is one of the allowed origins.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.origins.iter().any(|o| o.as_bytes() == origin)
    }
}

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Nobody is asked for credentials. Only on loopback addresses.
    #[default]
    None,
    /// OIDC/JWT bearer tokens verified against a JWKS.
    Jwt,
    /// A trusted reverse proxy (e.g. oauth2-proxy) names the user in a header.
    Proxy,
    /// The client certificate names the caller.
    Mtls,
}

/// Authentication settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The mode.
    #[serde(default)]
    pub mode: AuthMode,
    /// JWT settings, for `mode = "jwt"`.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Proxy settings, for `mode = "proxy"`.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
}

/// JWT settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Where the signing keys are published (http only on loopback).
    pub jwks_url: String,
    /// The `iss` every token must carry (required).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms: `RS256`, `ES256` (default both).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim with Temporal-style permissions `"<namespace>:<read|write|admin>"`.
    #[serde(default = "default_permissions_claim")]
    pub permissions_claim: String,
    /// The claim with the user's email.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// How often to refresh the JWKS, seconds.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_permissions_claim() -> String {
    "permissions".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_refresh() -> u64 {
    3600
}

/// Trusted reverse-proxy settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The header carrying the authenticated user, e.g. `X-Forwarded-Email`.
    pub user_header: String,
    /// Addresses or networks the proxy connects from; anything else is refused.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, bytes (413 above).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most payloads in one request (413 above; the parser stops at the one after).
    #[serde(default = "default_max_payloads")]
    pub max_payloads: usize,
    /// Bytes decryption and decompression may produce for one request, all
    /// payloads and layers together (413 above, refused before the step that
    /// would cross it). Default: 4 × `max_body_bytes`.
    #[serde(default)]
    pub max_decoded_bytes: Option<usize>,
    /// Bytes of one answer (413 above, refused before writing the payload
    /// that would cross it). Default: 6 × `max_body_bytes`.
    #[serde(default)]
    pub max_answer_bytes: Option<usize>,
    /// Longest a request may take, milliseconds (503 after).
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Requests handled at once; more wait.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Connections open at once; past it the server accepts no more until
    /// one closes (they wait in the listen backlog).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client has to send a request's headers, milliseconds: a new
    /// connection's first request, and each next one on a kept-alive HTTP/1
    /// connection. A client dribbling its headers is cut off.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A connection (HTTP/1 or HTTP/2) on which no request has started or
    /// been in flight for this long is closed, milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

fn default_max_body() -> usize {
    8 << 20
}
fn default_max_payloads() -> usize {
    10_000
}
fn default_timeout_ms() -> u64 {
    15_000
}
fn default_concurrency() -> usize {
    256
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_payloads: default_max_payloads(),
            max_decoded_bytes: None,
            max_answer_bytes: None,
            request_timeout_ms: default_timeout_ms(),
            max_concurrent_requests: default_concurrency(),
            max_connections: default_max_connections(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
        }
    }
}

impl LimitsConfig {
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The decoded-bytes budget of one request.
    pub fn max_decoded_bytes(&self) -> usize {
        self.max_decoded_bytes
            .unwrap_or(self.max_body_bytes.saturating_mul(4))
    }

    /// The answer-bytes budget of one request.
    pub fn max_answer_bytes(&self) -> usize {
        self.max_answer_bytes
            .unwrap_or(self.max_body_bytes.saturating_mul(6))
    }

    /// The header-read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The idle-connection timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let limits = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_payloads", self.max_payloads as u64),
            ("max_decoded_bytes", self.max_decoded_bytes() as u64),
            ("max_answer_bytes", self.max_answer_bytes() as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ];
        if let Some((name, _)) = limits.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(format!("limits.{name}"), "must be above zero"));
        }
        Ok(())
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Format. Env: `TCODEC_LOG_FORMAT`.
    #[serde(default)]
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `tcodec=debug`. Env: `TCODEC_LOG`.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

/// One namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The keyring file for the namespace's payloads.
    pub keyring: PathBuf,
    /// With `mode = "jwt"` or `"proxy"`: users (by email, case-insensitive)
    /// who may decode. With any email list set, token permissions are not
    /// consulted. Empty in proxy mode: whoever the proxy lets through.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// Users (by email) who may encode, and decode. Reading never grants
    /// encoding; in proxy mode nobody encodes unless listed here.
    #[serde(default)]
    pub encode_emails: Vec<String>,
    /// With `mode = "mtls"`: client certificate names (CN or DNS SAN) that may decode.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// With `mode = "mtls"`: client certificate names that may encode, and decode.
    #[serde(default)]
    pub encode_clients: Vec<String>,
    /// With `mode = "mtls"`: any client certificate `tls.client_ca` signed may
    /// decode (instead of naming them in `allowed_clients`).
    #[serde(default)]
    pub allow_any_client: bool,
    /// Legacy formats `/decode` decodes, for a migration: `binary/encrypted`
    /// (the official samples' encryption, given its key) and `binary/zlib`.
    /// Default none. Plaintext payloads are always shown as they are.
    #[serde(default)]
    pub decode_allow: Vec<String>,
    /// External Storage: where payloads too large for the history are, and
    /// the only place references are followed to.
    #[serde(default)]
    pub storage: Option<StorageSettings>,
}

/// `[namespaces.<name>.storage]`: one S3 bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// The bucket. References naming any other are refused.
    pub bucket: String,
    /// Object keys read and written start with this. Default
    /// `v0/ns/<namespace>/`, where the official S3 drivers write the
    /// namespace's payloads.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The S3 endpoint URL, if not AWS's (path-style addressing).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region; default the AWS chain's, else us-east-1.
    #[serde(default)]
    pub region: Option<String>,
    /// `/encode` stores sealed payloads of at least this many bytes
    /// (default 256 KiB, the SDKs' threshold).
    #[serde(default = "default_threshold")]
    pub threshold_bytes: usize,
    /// The driver name references carry (default `aws.s3driver`).
    #[serde(default = "default_driver_name")]
    pub driver_name: String,
    /// The largest object fetched (default: `limits.max_body_bytes`).
    #[serde(default)]
    pub max_object_bytes: Option<usize>,
    /// Per-request timeout, in milliseconds (default 10 000).
    #[serde(default = "default_storage_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_threshold() -> usize {
    tcodec::storage::DEFAULT_THRESHOLD
}
fn default_driver_name() -> String {
    tcodec::storage::S3_DRIVER.to_owned()
}
fn default_storage_timeout_ms() -> u64 {
    10_000
}

impl StorageSettings {
    /// The storage configuration of namespace `name` under `limits`.
    pub fn storage_config(
        &self,
        name: &str,
        limits: &LimitsConfig,
    ) -> tcodec::storage::StorageConfig {
        let mut config = tcodec::storage::StorageConfig::new(self.bucket.clone(), name);
        if let Some(prefix) = &self.prefix {
            config.prefix = prefix.clone();
        }
        config.driver_name = self.driver_name.clone();
        config.threshold = self.threshold_bytes;
        config.max_object_bytes = self.max_object_bytes.unwrap_or(limits.max_body_bytes);
        config
    }

    /// How to reach the bucket.
    pub fn s3_options(&self) -> tcodec::storage::s3::S3Options {
        tcodec::storage::s3::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            timeout: Some(Duration::from_millis(self.timeout_ms)),
        }
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let field = |f: &str| format!("namespaces.{name}.storage.{f}");
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                field("bucket"),
                "an S3 bucket name: 3 to 63 lower-case letters, digits, '-' and '.'",
            ));
        }
        if let Some(prefix) = &self.prefix
            && (prefix.chars().any(char::is_control) || prefix.len() > 512)
        {
            return Err(invalid(
                field("prefix"),
                "no control characters, at most 512 bytes",
            ));
        }
        if let Some(url) = &self.endpoint
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid(field("endpoint"), "an http:// or https:// URL"));
        }
        if self.driver_name.is_empty() {
            return Err(invalid(field("driver_name"), "must not be empty"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid(field("timeout_ms"), "must be positive"));
        }
        Ok(())
    }
}

impl NamespaceConfig {
    /// What `/decode` accepts besides tcodec's payloads: plaintext, shown as
    /// it is (old histories), and the legacy formats `decode_allow` names.
    pub fn decode_policy(&self) -> DecodePolicy {
        DecodePolicy::display().allow_each(&self.decode_allow)
    }
}

impl Config {
    /// Reads, applies environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no environment, no validation).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })
    }

    /// Applies `TCODEC_LISTEN`, `TCODEC_LOG_FORMAT` and `TCODEC_LOG`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = var("TCODEC_LISTEN") {
            self.listen = listen.parse().map_err(|_| {
                invalid(
                    "listen (TCODEC_LISTEN)",
                    format!("{listen:?} is not an address:port"),
                )
            })?;
        }
        if let Some(format) = var("TCODEC_LOG_FORMAT") {
            self.log.format = match format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(invalid(
                        "log.format (TCODEC_LOG_FORMAT)",
                        "use text or json",
                    ));
                }
            };
        }
        if let Some(level) = var("TCODEC_LOG") {
            self.log.level = level;
        }
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let loopback = self.listen.ip().is_loopback();
        if self.tls.is_none() && !loopback {
            return Err(invalid(
                "tls",
                "plain HTTP is allowed only on a loopback address; configure tls.cert and tls.key",
            ));
        }
        if self.namespaces.is_empty() {
            return Err(invalid(
                "namespaces",
                "configure at least one namespace and its keyring",
            ));
        }
        for (name, ns) in &self.namespaces {
            if let Some(other) = ns
                .decode_allow
                .iter()
                .find(|e| ![ENCODING_ENCRYPTED, ENCODING_ZLIB].contains(&e.as_str()))
            {
                return Err(invalid(
                    format!("namespaces.{name}.decode_allow"),
                    format!("{other:?}: name {ENCODING_ENCRYPTED} and/or {ENCODING_ZLIB}"),
                ));
            }
            if let Some(storage) = &ns.storage {
                storage.validate(name)?;
            }
        }
        self.validate_cors()?;
        self.validate_auth(loopback)?;
        self.limits.validate()
    }

    fn validate_cors(&self) -> Result<(), ConfigError> {
        for origin in &self.cors.origins {
            if origin == "*" {
                return Err(invalid(
                    "cors.origins",
                    "list origins explicitly; `*` is not allowed",
                ));
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(invalid(
                    "cors.origins",
                    format!("{origin:?} is not an origin like https://host[:port]"),
                ));
            }
        }
        Ok(())
    }

    fn validate_auth(&self, loopback: bool) -> Result<(), ConfigError> {
        match self.auth.mode {
            AuthMode::None if !loopback => {
                return Err(invalid(
                    "auth.mode",
                    "\"none\" is allowed only on a loopback address",
                ));
            }
            AuthMode::Jwt => {
                let jwt = self.auth.jwt.as_ref().ok_or_else(|| {
                    invalid("auth.jwt", "mode \"jwt\" needs an [auth.jwt] section")
                })?;
                jwt.validate()?;
            }
            AuthMode::Proxy => {
                let proxy = self.auth.proxy.as_ref().ok_or_else(|| {
                    invalid("auth.proxy", "mode \"proxy\" needs an [auth.proxy] section")
                })?;
                if proxy.trusted_proxies.is_empty() {
                    return Err(invalid(
                        "auth.proxy.trusted_proxies",
                        "name the proxy's addresses",
                    ));
                }
            }
            AuthMode::Mtls => {
                if self
                    .tls
                    .as_ref()
                    .and_then(|t| t.client_ca.as_ref())
                    .is_none()
                {
                    return Err(invalid(
                        "tls.client_ca",
                        "mode \"mtls\" needs tls.client_ca",
                    ));
                }
                self.validate_client_lists()?;
            }
            AuthMode::None => {}
        }
        Ok(())
    }

    /// In mTLS mode every namespace names its clients, or says explicitly
    /// that any client of the CA may decode.
    fn validate_client_lists(&self) -> Result<(), ConfigError> {
        for (name, ns) in &self.namespaces {
            let field = format!("namespaces.{name}.allowed_clients");
            match (ns.allow_any_client, ns.allowed_clients.is_empty()) {
                (true, false) => {
                    return Err(invalid(
                        field,
                        "name clients or set allow_any_client = true, not both",
                    ));
                }
                (false, true) if ns.encode_clients.is_empty() => {
                    return Err(invalid(
                        field,
                        "name the client certificates (CN or DNS SAN) that may decode, or set allow_any_client = true to let any client of tls.client_ca decode",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a JWKS URL is https, or http to a loopback address: parsed, so
/// that `http://localhost@evil.example/` or `http://127.evil.example/` do not
/// pass for loopback.
fn jwks_url_is_safe(url: &str) -> bool {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false;
    }
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

impl JwtConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.audiences.is_empty() {
            return Err(invalid(
                "auth.jwt.audiences",
                "name at least one accepted audience",
            ));
        }
        if !jwks_url_is_safe(&self.jwks_url) {
            return Err(invalid(
                "auth.jwt.jwks_url",
                "must be an https URL (http only to a loopback address)",
            ));
        }
        for alg in &self.algorithms {
            if !matches!(alg.as_str(), "RS256" | "ES256") {
                return Err(invalid(
                    "auth.jwt.algorithms",
                    format!("{alg:?}: use RS256 and/or ES256"),
                ));
            }
        }
        if self.issuer.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "auth.jwt.issuer",
                "name the issuer (`iss`) your tokens carry: any issuer with a key in the JWKS would otherwise be believed",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[namespaces.default]\nkeyring = \"k.json\"\n";

    #[test]
    fn minimal_config_is_loopback_without_auth() {
        let c = Config::parse(MINIMAL).unwrap();
        c.validate().unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.auth.mode, AuthMode::None);
        assert_eq!(c.limits.max_payloads, 10_000);
        assert!(c.kek.kms_keys.is_empty(), "no KMS key unless listed");
        let c = Config::parse(&format!("[kek]\nkms_keys = [\"alias/tcodec\"]\n{MINIMAL}")).unwrap();
        assert_eq!(c.kek.kms_keys, ["alias/tcodec"]);
    }

    #[test]
    fn errors_name_the_field() {
        let check = |text: &str, field: &str| {
            let err = Config::parse(text)
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err} should name {field}");
        };
        check(&format!("listen = \"0.0.0.0:8080\"\n{MINIMAL}"), "tls");
        check(&format!("[auth]\nmode = \"jwt\"\n{MINIMAL}"), "auth.jwt");
        check(
            &format!("[cors]\norigins = [\"*\"]\n{MINIMAL}"),
            "cors.origins",
        );
        check(
            &format!("[cors]\norigins = [\"http://x/\"]\n{MINIMAL}"),
            "cors.origins",
        );
        check(&format!("bogus = 1\n{MINIMAL}"), "bogus");
        check(
            &format!("[limits]\nmax_payloads = \"many\"\n{MINIMAL}"),
            "max_payloads",
        );
        check(
            &format!("[limits]\nmax_connections = 0\n{MINIMAL}"),
            "limits.max_connections",
        );
        check("", "namespaces");
        check(
            &format!(
                "[auth]\nmode = \"proxy\"\n[auth.proxy]\nuser_header = \"X-Email\"\ntrusted_proxies = []\n{MINIMAL}"
            ),
            "trusted_proxies",
        );
        check(
            &format!("[auth]\nmode = \"mtls\"\n{MINIMAL}"),
            "tls.client_ca",
        );
        check(
            &format!("{MINIMAL}decode_allow = [\"json/plain\"]\n"),
            "namespaces.default.decode_allow",
        );
        check(
            &format!(
                "[auth]\nmode = \"jwt\"\n[auth.jwt]\njwks_url = \"https://sso.example/jwks\"\naudiences = [\"a\"]\n{MINIMAL}"
            ),
            "auth.jwt.issuer",
        );
        check(
            &format!(
                "[auth]\nmode = \"jwt\"\n[auth.jwt]\njwks_url = \"http://example.com/jwks\"\naudiences = [\"a\"]\n{MINIMAL}"
            ),
            "jwks_url",
        );
    }

    #[test]
    fn jwks_urls_over_http_must_name_a_loopback_address() {
        for good in [
            "https://login.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(jwks_url_is_safe(good), "{good}");
        }
        for bad in [
            "http://example.com/jwks",
            "http://localhost@evil.example/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "http://127.evil.example/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://127.0.0.1/jwks",
            "https://user@login.example.com/jwks",
            "not a url",
        ] {
            assert!(!jwks_url_is_safe(bad), "{bad}");
        }
    }

    #[test]
    fn environment_overrides() {
        let mut c = Config::parse(MINIMAL).unwrap();
        c.apply_env(|k| match k {
            "TCODEC_LISTEN" => Some("127.0.0.1:9999".into()),
            "TCODEC_LOG_FORMAT" => Some("json".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.log.format, LogFormat::Json);
        let err = c
            .apply_env(|k| (k == "TCODEC_LISTEN").then(|| "nope".into()))
            .unwrap_err();
        assert!(err.to_string().contains("TCODEC_LISTEN"));
    }
}
