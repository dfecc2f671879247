//! Who is calling, and may they use this namespace?
//!
//! - `jwt`: `Authorization: Bearer <JWT>` verified against a JWKS (signature by
//!   `kid`, algorithm RS256/ES256, issuer, audience, expiry). Access comes from
//!   the namespace's email allow-list if it has one, else from Temporal-style
//!   permissions `"<namespace>:<read|write|admin>"` in a configurable claim.
//! - `proxy`: a trusted reverse proxy (oauth2-proxy and the like) has
//!   authenticated the user and names them in a header; requests from any other
//!   address are refused.
//! - `mtls`: the verified client certificate names the caller.
//! - `none`: no credentials (loopback only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use crate::config::{AuthConfig, AuthMode, JwtConfig, NamespaceConfig, ProxyConfig};

/// What the connection layer knows about the caller.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// Names in the verified client certificate (CN first, then DNS SANs).
    pub client_names: Vec<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How they were authenticated: `jwt`, `proxy`, `mtls` or `none`.
    pub method: &'static str,
    /// Who they are, for audit logs: email, subject or certificate name.
    pub user: String,
    /// Their email, if known.
    pub email: Option<String>,
    /// Temporal-style permissions from the token.
    pub permissions: Vec<String>,
    /// Certificate names, for `mtls`.
    pub names: Vec<String>,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/decode`.
    Read,
    /// `/encode`.
    Write,
}

/// Why authentication failed. The reason goes to the log, never to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials where some are required.
    #[error("no credentials: {0}")]
    Missing(&'static str),
    /// Credentials that do not verify.
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

/// Checks credentials according to the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    jwt: Option<Arc<JwtVerifier>>,
    proxy: Option<ProxyConfig>,
}

impl Authenticator {
    /// Sets up the configured mode. For JWT this builds the JWKS client but
    /// fetches nothing yet ([`Authenticator::prepare`] does).
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let jwt = match (&config.mode, &config.jwt) {
            (AuthMode::Jwt, Some(jwt)) => Some(Arc::new(JwtVerifier::new(jwt.clone())?)),
            _ => None,
        };
        Ok(Self {
            mode: config.mode,
            jwt,
            proxy: config.proxy.clone(),
        })
    }

    /// Fetches what verification needs (the JWKS). Errors are returned for the
    /// caller to log; verification retries on demand.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        if let Some(jwt) = &self.jwt {
            jwt.refresh(true).await?;
        }
        Ok(())
    }

    /// Starts background work (JWKS refresh). Needs a Tokio runtime.
    pub fn start_background(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.spawn_refresher();
        }
    }

    /// Whether verification has what it needs.
    pub async fn ready(&self) -> bool {
        match &self.jwt {
            Some(jwt) => jwt.keys.read().await.is_some(),
            None => true,
        }
    }

    /// Authenticates a request.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Identity, AuthError> {
        match self.mode {
            AuthMode::None => Ok(Identity {
                method: "none",
                user: peer
                    .map(|p| p.addr.ip().to_string())
                    .unwrap_or_else(|| "anonymous".into()),
                email: None,
                permissions: Vec::new(),
                names: Vec::new(),
            }),
            AuthMode::Jwt => {
                let jwt = self
                    .jwt
                    .as_ref()
                    .ok_or(AuthError::Missing("JWT verification is not configured"))?;
                let header = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::Missing("no Authorization header"))?;
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        AuthError::Invalid("Authorization is not a Bearer token".into())
                    })?;
                jwt.verify(token.trim()).await
            }
            AuthMode::Proxy => {
                let proxy = self
                    .proxy
                    .as_ref()
                    .ok_or(AuthError::Missing("proxy auth is not configured"))?;
                let peer = peer.ok_or(AuthError::Missing("unknown peer address"))?;
                if !proxy
                    .trusted_proxies
                    .iter()
                    .any(|net| net.contains(&peer.addr.ip()))
                {
                    return Err(AuthError::Invalid(format!(
                        "request from {} did not come through a trusted proxy",
                        peer.addr.ip()
                    )));
                }
                let user = headers
                    .get(proxy.user_header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or(AuthError::Missing("the proxy named no user"))?;
                Ok(Identity {
                    method: "proxy",
                    user: user.to_owned(),
                    email: user.contains('@').then(|| user.to_owned()),
                    permissions: Vec::new(),
                    names: Vec::new(),
                })
            }
            AuthMode::Mtls => {
                let names = peer.map(|p| p.client_names.clone()).unwrap_or_default();
                let first = names
                    .first()
                    .cloned()
                    .ok_or(AuthError::Missing("no client certificate"))?;
                Ok(Identity {
                    method: "mtls",
                    user: first,
                    email: None,
                    permissions: Vec::new(),
                    names,
                })
            }
        }
    }
}

/// May `identity` use namespace `name` for `access`?
pub fn authorized(identity: &Identity, name: &str, ns: &NamespaceConfig, access: Access) -> bool {
    let email_listed = |email: Option<&String>| {
        email.is_some_and(|e| ns.allowed_emails.iter().any(|a| a.eq_ignore_ascii_case(e)))
    };
    match identity.method {
        "none" => true,
        "mtls" => {
            ns.allowed_clients.is_empty()
                || identity
                    .names
                    .iter()
                    .any(|n| ns.allowed_clients.contains(n))
        }
        "proxy" => ns.allowed_emails.is_empty() || email_listed(identity.email.as_ref()),
        "jwt" if !ns.allowed_emails.is_empty() => email_listed(identity.email.as_ref()),
        "jwt" => identity.permissions.iter().any(|p| {
            let Some((namespace, role)) = p.rsplit_once(':') else {
                return false;
            };
            namespace == name
                && match access {
                    Access::Read => matches!(role, "read" | "write" | "admin"),
                    Access::Write => matches!(role, "write" | "admin"),
                }
        }),
        _ => false,
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// Verifies JWTs against a JWKS fetched from a URL and kept fresh.
pub struct JwtVerifier {
    config: JwtConfig,
    client: HttpsClient,
    keys: RwLock<Option<Arc<JwkSet>>>,
    last_fetch: Mutex<Option<Instant>>,
}

/// An unknown `kid` refetches the JWKS at most this often.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
const JWKS_MAX_BYTES: usize = 1 << 20;

impl JwtVerifier {
    fn new(config: JwtConfig) -> anyhow::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| anyhow::anyhow!("cannot load the system's trusted CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            config,
            client: Client::builder(TokioExecutor::new()).build(https),
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
        })
    }

    /// Fetches the JWKS, unless one was fetched less than
    /// [`REFETCH_MIN_INTERVAL`] ago (and `force` is off).
    async fn refresh(&self, force: bool) -> anyhow::Result<()> {
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < REFETCH_MIN_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let url: hyper::Uri = self.config.jwks_url.parse()?;
        let fetch = async {
            let response = self.client.get(url).await?;
            if !response.status().is_success() {
                anyhow::bail!("JWKS endpoint answered {}", response.status());
            }
            let body = http_body_util::Limited::new(response.into_body(), JWKS_MAX_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("cannot read JWKS: {e}"))?
                .to_bytes();
            Ok(serde_json::from_slice::<JwkSet>(&body)?)
        };
        let set = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .map_err(|_| anyhow::anyhow!("JWKS fetch from {} timed out", self.config.jwks_url))??;
        *self.keys.write().await = Some(Arc::new(set));
        Ok(())
    }

    /// Keeps the JWKS fresh in the background.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let every = Duration::from_secs(me.config.jwks_refresh_seconds.max(60));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = me.refresh(true).await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys already loaded");
                }
            }
        });
    }

    async fn key_for(&self, kid: &str) -> Option<DecodingKey> {
        let find = |set: &JwkSet| {
            set.find(kid)
                .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
        };
        if let Some(set) = self.keys.read().await.clone()
            && let Some(key) = find(&set)
        {
            return Some(key);
        }
        // A key we do not know: the issuer may have rotated. Look again (rate-limited).
        if let Err(e) = self.refresh(false).await {
            tracing::warn!(error = %e, "JWKS refresh for an unknown key id failed");
        }
        let set = self.keys.read().await.clone()?;
        find(&set)
    }

    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let allowed = self.config.algorithms.iter().any(|a| match header.alg {
            Algorithm::RS256 => a == "RS256",
            Algorithm::ES256 => a == "ES256",
            _ => false,
        });
        if !allowed {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
        let key = self
            .key_for(&kid)
            .await
            .ok_or_else(|| AuthError::Invalid(format!("no signing key {kid:?} in the JWKS")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&self.config.audiences);
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(format!("token rejected: {e}")))?;
        let claims = data.claims;
        let email = claims
            .get(&self.config.email_claim)
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let permissions = match claims.get(&self.config.permissions_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => s
                .split([' ', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let user = email
            .clone()
            .or_else(|| {
                claims
                    .get("sub")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into());
        Ok(Identity {
            method: "jwt",
            user,
            email,
            permissions,
            names: Vec::new(),
        })
    }
}
