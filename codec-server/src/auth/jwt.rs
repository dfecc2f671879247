//! `mode = "jwt"`: bearer JWTs verified against a JWKS fetched from a URL and
//! kept fresh; Temporal-style `"<namespace>:<read|write|admin>"` permissions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rustls::crypto::CryptoProvider;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::{Access, AuthError, AuthMethod, Identity};
use crate::config::JwtConfig;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// An unknown `kid` refetches the JWKS at most this often.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The largest JWKS document read.
const JWKS_MAX_BYTES: usize = 1 << 20;
/// How long one JWKS fetch may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies JWTs against a JWKS fetched from a URL and kept fresh.
pub struct JwtVerifier {
    config: JwtConfig,
    client: HttpsClient,
    keys: RwLock<Option<Arc<JwkSet>>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl JwtVerifier {
    /// A verifier for `config` whose JWKS client uses `provider` for TLS.
    pub(crate) fn new(config: JwtConfig, provider: Arc<CryptoProvider>) -> Result<Self, AuthError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(AuthError::TrustRoots)?
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

    /// Whether a JWKS has been fetched.
    pub(crate) async fn ready(&self) -> bool {
        self.keys.read().await.is_some()
    }

    fn jwks_error(&self, reason: impl ToString) -> AuthError {
        AuthError::Jwks {
            url: self.config.jwks_url.clone(),
            reason: reason.to_string(),
        }
    }

    /// Fetches the JWKS, unless one was fetched less than
    /// [`REFETCH_MIN_INTERVAL`] ago (and `force` is off).
    pub(crate) async fn refresh(&self, force: bool) -> Result<(), AuthError> {
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < REFETCH_MIN_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set = tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| self.jwks_error("timed out"))??;
        *self.keys.write().await = Some(Arc::new(set));
        Ok(())
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let url: hyper::Uri = self
            .config
            .jwks_url
            .parse()
            .map_err(|e| self.jwks_error(e))?;
        let response = self.client.get(url).await.map_err(|e| self.jwks_error(e))?;
        if !response.status().is_success() {
            return Err(self.jwks_error(format!("answered {}", response.status())));
        }
        let body = http_body_util::Limited::new(response.into_body(), JWKS_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| self.jwks_error(e))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| self.jwks_error(e))
    }

    /// Keeps the JWKS fresh in the background.
    pub(crate) fn spawn_refresher(self: &Arc<Self>) {
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

    /// The caller a request's `Authorization: Bearer` token names.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing("no Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("Authorization is not a Bearer token".into()))?;
        self.verify(token.trim()).await
    }

    /// Verifies a token's signature and claims.
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let kid = self.check_header(&header)?;
        let key = self
            .key_for(kid)
            .await
            .ok_or_else(|| AuthError::Invalid(format!("no signing key {kid:?} in the JWKS")))?;
        let data = jsonwebtoken::decode::<Value>(token, &key, &self.validation(header.alg))
            .map_err(|e| AuthError::Invalid(format!("token rejected: {e}")))?;
        Ok(self.identity(&data.claims))
    }

    /// The header's `kid`, if its algorithm is one the configuration accepts.
    fn check_header<'h>(&self, header: &'h Header) -> Result<&'h str, AuthError> {
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
        header
            .kid
            .as_deref()
            .ok_or_else(|| AuthError::Invalid("token has no kid".into()))
    }

    /// The checks every token must pass besides its signature.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_audience(&self.config.audiences);
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation
    }

    /// Who verified claims name: email, else subject. An email the token
    /// says is not verified (`email_verified: false`) is not taken: the
    /// issuer has not shown the caller owns it.
    fn identity(&self, claims: &Value) -> Identity {
        let verified = claims.get("email_verified") != Some(&Value::Bool(false));
        let email = claims
            .get(&self.config.email_claim)
            .and_then(Value::as_str)
            .filter(|_| verified)
            .map(str::to_owned);
        let user = email
            .clone()
            .or_else(|| claims.get("sub").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        let mut identity = Identity::new(AuthMethod::Jwt, user);
        identity.email = email;
        identity.permissions = permissions(claims.get(&self.config.permissions_claim));
        identity
    }
}

/// The permissions claim: an array of strings, or one string of them
/// separated by spaces or commas.
fn permissions(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether Temporal-style `permissions` grant `access` to namespace `name`:
/// `read`, `write` or `admin` reads; `write` or `admin` writes.
pub(crate) fn permits(permissions: &[String], name: &str, access: Access) -> bool {
    permissions.iter().any(|p| {
        let Some((namespace, role)) = p.rsplit_once(':') else {
            return false;
        };
        namespace == name
            && match access {
                Access::Read => matches!(role, "read" | "write" | "admin"),
                Access::Write => matches!(role, "write" | "admin"),
            }
    })
}
