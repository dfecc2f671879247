//! What a request needs ([`AppState`]) and the router with its layers
//! ([`app`]). Tests call the router in-process; [`crate::serve`] puts it on a
//! socket.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rustls::crypto::CryptoProvider;
use tcodec::storage::s3::S3Store;
use tcodec::{Codec, CodecOptions};
use tcodec_keys::kek::{AWS_KMS, KekError, KekSettings, Keks};
use tcodec_keys::{FileKeyring, Watcher};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Authenticator;
use crate::config::{Config, CorsConfig, LimitsConfig, NamespaceConfig};
use crate::error::ServerError;
use crate::escaped::Escaped;
use crate::handlers::{self, AppError};
use crate::metrics::Metrics;

/// One namespace the server answers for.
pub struct Namespace {
    /// The namespace's codec, over its keyring.
    pub codec: Arc<Codec>,
    /// The same codec over the keys in memory, deferring decompression: it
    /// never waits, so it runs on the async workers (see
    /// [`handlers::INLINE_MAX_BODY`]).
    pub inline_codec: Codec,
    /// The keyring, for readiness checks.
    pub keyring: FileKeyring,
    /// Access rules.
    pub config: NamespaceConfig,
    /// External Storage, if configured.
    pub storage: Option<S3Store>,
    /// Keeps the keyring's file watcher running.
    pub _watcher: Option<Watcher>,
}

impl Namespace {
    /// The namespace `name` over its keyring file, which is read once here.
    fn open(
        name: &str,
        config: &NamespaceConfig,
        keks: impl FnOnce(&tcodec_keys::document::KeyringDocument) -> Result<Keks, KekError>,
        options: &CodecOptions,
        limits: &LimitsConfig,
    ) -> Result<Self, ServerError> {
        let keyring = FileKeyring::open_with(&config.keyring, keks).map_err(|source| {
            ServerError::Keyring {
                namespace: name.to_owned(),
                source,
            }
        })?;
        let options = options.clone().with_decode_policy(config.decode_policy());
        let watcher = keyring.watch(tcodec_keys::WATCH_INTERVAL);
        Ok(Self {
            inline_codec: Codec::with_options(
                Arc::new(keyring.in_memory()),
                options.clone().with_deferred_decompression(true),
            ),
            codec: Arc::new(Codec::with_options(Arc::new(keyring.clone()), options)),
            keyring,
            config: config.clone(),
            storage: config
                .storage
                .as_ref()
                .map(|s| S3Store::new(s.storage_config(name, limits), s.s3_options())),
            _watcher: Some(watcher),
        })
    }
}

/// Everything a request needs.
pub struct AppState {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Credential checks.
    pub auth: Authenticator,
    /// Request limits.
    pub limits: LimitsConfig,
    /// CORS rules.
    pub cors: CorsConfig,
    /// Counters.
    pub metrics: Metrics,
    /// The last readiness report ([`crate::readiness`]).
    pub readiness: crate::readiness::Readiness,
}

impl AppState {
    /// Opens every namespace's keyring (each file read once; the KEK providers
    /// shared, AWS KMS started only if a keyring names it) and sets up
    /// authentication, whose JWKS client uses `provider` for TLS.
    pub fn from_config(
        config: &Config,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, ServerError> {
        // No payload decodes to more than a request may carry, so a small
        // compressed payload cannot make the server allocate without bound.
        let options = CodecOptions::default().with_max_decoded_size(config.limits.max_body_bytes);
        let shared = SharedKeks::new(&config.kek);
        let mut namespaces = BTreeMap::new();
        for (name, ns) in &config.namespaces {
            let namespace = Namespace::open(
                name,
                ns,
                |doc| shared.for_document(doc),
                &options,
                &config.limits,
            )?;
            namespaces.insert(name.clone(), namespace);
        }
        Ok(Self {
            namespaces,
            auth: Authenticator::new(&config.auth, provider)?,
            limits: config.limits.clone(),
            cors: config.cors.clone(),
            metrics: Metrics::default(),
            readiness: crate::readiness::Readiness::default(),
        })
    }
}

/// The KEK providers of every namespace: one local master key and at most one
/// AWS KMS client, started by the first keyring that names it.
struct SharedKeks<'s> {
    settings: &'s KekSettings,
    without_kms: OnceLock<Keks>,
    with_kms: OnceLock<Keks>,
}

impl<'s> SharedKeks<'s> {
    fn new(settings: &'s KekSettings) -> Self {
        Self {
            settings,
            without_kms: OnceLock::new(),
            with_kms: OnceLock::new(),
        }
    }

    fn for_document(&self, doc: &tcodec_keys::document::KeyringDocument) -> Result<Keks, KekError> {
        // Listed KMS keys start KMS too: temporal-proxy payloads under them
        // are read through it, whatever KEK the keyring's own keys use.
        let kms = doc.uses_provider(AWS_KMS) || !self.settings.kms_keys.is_empty();
        let cell = if kms {
            &self.with_kms
        } else {
            &self.without_kms
        };
        if let Some(keks) = cell.get() {
            return Ok(keks.clone());
        }
        let keks = self.settings.keks(kms)?;
        Ok(cell.get_or_init(|| keks).clone())
    }
}

/// The router. Tests call it in-process; [`crate::serve::serve`] puts it on
/// a socket.
///
/// Layers, innermost first: the origin guard, the concurrency limit, CORS,
/// the preflight counter. The request timeout, the body limit and the request
/// log are not tower-http's `timeout`, `limit` and `trace` layers but part of
/// the codec handler: a timed-out or oversized request must still get the JSON
/// error, the audit line and the metrics every codec request gets, and the
/// audit line names what only the handler knows (the caller, the namespace,
/// the payload count). See [`handlers::codec_endpoint`].
pub fn app(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/{*path}", post(handlers::codec_endpoint))
        .fallback(|| async { AppError::not_found() })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            origin_guard,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.limits.max_concurrent_requests,
        ));
    let router = match cors_layer(&state.cors) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost, so it sees the preflights the CORS layer answers.
    router
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_preflight,
        ))
        .with_state(state)
}

/// Counts CORS preflights by whether their origin is allowed, and logs them
/// at debug level: the first thing to look at when the UI cannot connect.
async fn count_preflight(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .map(|o| o.as_bytes())
            .unwrap_or_default();
        let allowed = state.cors.allows(origin);
        let origin = String::from_utf8_lossy(origin);
        state.metrics.preflight(allowed);
        tracing::debug!(
            origin = %Escaped(&origin), allowed, path = %Escaped(request.uri().path()),
            "CORS preflight"
        );
    }
    next.run(request).await
}

fn cors_layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static("x-namespace"),
                header::AUTHORIZATION,
                HeaderName::from_static("authorization-extras"),
            ])
            .allow_credentials(config.allow_credentials)
            .max_age(Duration::from_secs(600)),
    )
}

/// Browsers name their origin; a cross-origin request from an origin not in
/// the list is refused here too, not only by the browser. Requests without an
/// `Origin` (the CLI, workers) pass.
async fn origin_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::OPTIONS
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !state.cors.allows(origin.as_bytes())
    {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        tracing::warn!(
            target: "tcodec::audit",
            origin = %Escaped(&origin), path = %Escaped(request.uri().path()),
            "refused cross-origin request"
        );
        state.metrics.request("other", 403, None);
        return AppError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("origin {origin} is not allowed"),
        )
        .into_response();
    }
    next.run(request).await
}
