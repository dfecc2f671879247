//! Who is calling, and may they use this namespace?
//!
//! - `jwt` ([`jwt`]): `Authorization: Bearer <JWT>` verified against a JWKS
//!   (signature by `kid`, algorithm RS256/ES256, issuer, audience, expiry).
//!   Access comes from the namespace's email allow-list if it has one, else
//!   from Temporal-style permissions `"<namespace>:<read|write|admin>"`.
//! - `proxy` ([`proxy`]): a trusted reverse proxy (oauth2-proxy and the like)
//!   has authenticated the user and names them in a header; requests from any
//!   other address are refused.
//! - `mtls` ([`mtls`]): the verified client certificate names the caller.
//! - `none`: no credentials (loopback only).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use rustls::crypto::CryptoProvider;

use crate::config::{AuthConfig, AuthMode, NamespaceConfig, ProxyConfig};

pub mod jwt;
pub mod mtls;
pub mod proxy;

use jwt::JwtVerifier;

/// What the connection layer knows about the caller.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// Names in the verified client certificate (CN first, then DNS SANs).
    pub client_names: Vec<String>,
}

/// How a caller was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No credentials (loopback only).
    None,
    /// A bearer JWT verified against the JWKS.
    Jwt,
    /// A trusted proxy named the user.
    Proxy,
    /// A verified client certificate.
    Mtls,
}

impl AuthMethod {
    /// The method's name in audit logs: `none`, `jwt`, `proxy` or `mtls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Jwt => "jwt",
            Self::Proxy => "proxy",
            Self::Mtls => "mtls",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How they were authenticated.
    pub method: AuthMethod,
    /// Who they are, for audit logs: email, subject or certificate name.
    pub user: String,
    /// Their email, if known.
    pub email: Option<String>,
    /// Temporal-style permissions from the token.
    pub permissions: Vec<String>,
    /// Certificate names, for `mtls`.
    pub names: Vec<String>,
}

impl Identity {
    /// A caller known only as `user`, by `method`.
    pub(crate) fn new(method: AuthMethod, user: String) -> Self {
        Self {
            method,
            user,
            email: None,
            permissions: Vec::new(),
            names: Vec::new(),
        }
    }
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
#[non_exhaustive]
pub enum AuthError {
    /// No credentials where some are required.
    #[error("no credentials: {0}")]
    Missing(&'static str),
    /// Credentials that do not verify.
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// The JWKS could not be fetched.
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Jwks {
        /// The configured JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The system's trusted CA certificates could not be loaded (for fetching
    /// the JWKS over HTTPS).
    #[error("cannot load the system's trusted CA certificates")]
    TrustRoots(#[source] std::io::Error),
}

/// Checks credentials according to the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    jwt: Option<Arc<JwtVerifier>>,
    proxy: Option<ProxyConfig>,
}

impl Authenticator {
    /// Sets up the configured mode. For JWT this builds the JWKS client (TLS
    /// from `provider`) but fetches nothing yet ([`Authenticator::prepare`]
    /// does).
    pub fn new(config: &AuthConfig, provider: Arc<CryptoProvider>) -> Result<Self, AuthError> {
        let jwt = match (&config.mode, &config.jwt) {
            (AuthMode::Jwt, Some(jwt)) => Some(Arc::new(JwtVerifier::new(jwt.clone(), provider)?)),
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
    pub async fn prepare(&self) -> Result<(), AuthError> {
        match &self.jwt {
            Some(jwt) => jwt.refresh(true).await,
            None => Ok(()),
        }
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
            Some(jwt) => jwt.ready().await,
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
            AuthMode::None => Ok(Identity::new(
                AuthMethod::None,
                peer.map(|p| p.addr.ip().to_string())
                    .unwrap_or_else(|| "anonymous".into()),
            )),
            AuthMode::Jwt => {
                let jwt = self
                    .jwt
                    .as_ref()
                    .ok_or(AuthError::Missing("JWT verification is not configured"))?;
                jwt.authenticate(headers).await
            }
            AuthMode::Proxy => {
                let config = self
                    .proxy
                    .as_ref()
                    .ok_or(AuthError::Missing("proxy auth is not configured"))?;
                proxy::authenticate(config, headers, peer)
            }
            AuthMode::Mtls => mtls::authenticate(peer),
        }
    }
}

/// May `identity` use namespace `name` for `access`? Reading (`/decode`)
/// never implies writing (`/encode`): encoding seals payloads workers will
/// accept as their own, so it is granted only by a write permission or an
/// `encode_*` list. Whoever may encode may also decode.
pub fn authorized(identity: &Identity, name: &str, ns: &NamespaceConfig, access: Access) -> bool {
    let email_in = |list: &[String]| {
        identity
            .email
            .as_ref()
            .is_some_and(|e| list.iter().any(|a| a.eq_ignore_ascii_case(e)))
    };
    let name_in = |list: &[String]| identity.names.iter().any(|n| list.contains(n));
    let email_lists = !ns.allowed_emails.is_empty() || !ns.encode_emails.is_empty();
    match (identity.method, access) {
        (AuthMethod::None, _) => true,
        (AuthMethod::Mtls, Access::Write) => name_in(&ns.encode_clients),
        (AuthMethod::Mtls, Access::Read) => {
            ns.allow_any_client || name_in(&ns.allowed_clients) || name_in(&ns.encode_clients)
        }
        (AuthMethod::Proxy | AuthMethod::Jwt, Access::Write) if email_lists => {
            email_in(&ns.encode_emails)
        }
        (AuthMethod::Proxy | AuthMethod::Jwt, Access::Read) if email_lists => {
            email_in(&ns.allowed_emails) || email_in(&ns.encode_emails)
        }
        // Without lists the proxy has decided who gets through, to read.
        (AuthMethod::Proxy, Access::Read) => true,
        (AuthMethod::Proxy, Access::Write) => false,
        (AuthMethod::Jwt, _) => jwt::permits(&identity.permissions, name, access),
    }
}
