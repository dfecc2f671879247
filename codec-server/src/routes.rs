//! The HTTP surface: `POST …/encode`, `POST …/decode` under any path prefix,
//! `/healthz`, `/readyz`, `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use tcodec::{Codec, CodecError, display_chain as chain};
use tcodec_keys::{FileKeyring, KeyError, KeySource, Watcher};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Access, Authenticator, Identity, PeerInfo, authorized};
use crate::config::{CorsConfig, LimitsConfig, NamespaceConfig};
use crate::json::{ProcessError, process};
use crate::metrics::{Endpoint, Metrics};

/// The largest request body answered on the async workers (see [`run`]'s
/// comments): tens of microseconds of work to decode, a few hundred at most
/// to encode with compression.
pub const INLINE_MAX_BODY: usize = 64 << 10;

/// One namespace the server answers for.
pub struct Namespace {
    /// The namespace's codec, over its keyring.
    pub codec: Arc<Codec>,
    /// The same codec over the keys in memory, deferring decompression: it
    /// never waits, so it runs on the async workers (see [`run`]).
    pub inline_codec: Codec,
    /// The keyring, for readiness checks.
    pub keyring: FileKeyring,
    /// Access rules.
    pub config: NamespaceConfig,
    /// Keeps the keyring's file watcher running.
    pub _watcher: Option<Watcher>,
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
}

/// An error answer: a status, a stable code, and a message safe to show.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn codec_error(e: &CodecError) -> AppError {
    let (status, code) = match e {
        CodecError::Key {
            source: KeyError::Unavailable { .. },
            ..
        } => (StatusCode::SERVICE_UNAVAILABLE, "key_unavailable"),
        CodecError::Key { .. } => (StatusCode::BAD_REQUEST, "key_refused"),
        CodecError::Decrypt { .. } => (StatusCode::BAD_REQUEST, "decrypt_failed"),
        CodecError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_payload"),
        CodecError::TooLarge { .. } => (StatusCode::BAD_REQUEST, "payload_too_large"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    AppError::new(status, code, chain(e))
}

/// The router. Tests call it in-process; `serve` puts it on a socket.
pub fn app(state: Arc<AppState>) -> Router {
    let cors = cors_layer(&state.cors);
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/{*path}", post(codec_endpoint))
        .fallback(|| async {
            AppError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            origin_guard,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.limits.max_concurrent_requests,
        ));
    let router = match cors {
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
        tracing::debug!(%origin, allowed, path = %request.uri().path(), "CORS preflight");
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
            .max_age(std::time::Duration::from_secs(600)),
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
        tracing::warn!(target: "tcodec::audit", %origin, path = %request.uri().path(), "refused cross-origin request");
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

/// Ready when every namespace has a usable primary key and the JWKS is
/// loaded. A keyring file that changed into something unusable (garbage, half
/// written, invalid) does not make the server unready, since it goes on with
/// the last good keyring, but is reported under `warnings`.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for (name, ns) in &state.namespaces {
        if let Err(e) = ns.keyring.primary() {
            problems.push(format!("namespace {name}: {}", chain(&e)));
        }
        if let Some(e) = ns.keyring.last_reload_error() {
            warnings.push(format!(
                "namespace {name}: the keyring file was rejected, the last good keyring is in use: {e}"
            ));
        }
    }
    if !state.auth.ready().await {
        problems.push("the JWKS has not been fetched".into());
    }
    let ready = problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "ready": ready, "problems": problems, "warnings": warnings });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn codec_endpoint(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let endpoint = match request.uri().path().rsplit('/').next() {
        Some("encode") => Endpoint::Encode,
        Some("decode") => Endpoint::Decode,
        _ => {
            state.metrics.request("other", 404, None);
            return AppError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
                .into_response();
        }
    };
    let _in_flight = state.metrics.in_flight();
    let peer = peer.map(|Extension(p)| p);
    let namespace = request
        .headers()
        .get("x-namespace")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let work = handle(&state, endpoint, &namespace, peer.as_ref(), request);
    let (result, who, count) =
        match tokio::time::timeout(state.limits.request_timeout(), work).await {
            Ok(out) => out,
            Err(_) => (
                Err(AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the request took too long",
                )),
                None,
                0,
            ),
        };
    let latency = started.elapsed();
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    state.metrics.request(
        endpoint.as_str(),
        status.as_u16(),
        Some((endpoint, latency)),
    );
    // The audit line: who, which namespace, what, how many, how it went.
    let user = who.as_ref().map(|i| i.user.as_str()).unwrap_or("-");
    let method = who.as_ref().map(|i| i.method).unwrap_or("-");
    match &result {
        Ok(_) => tracing::info!(
            target: "tcodec::audit",
            user, auth = method, namespace = %namespace, endpoint = endpoint.as_str(),
            payloads = count, status = status.as_u16(), latency_ms = latency.as_secs_f64() * 1e3,
            "codec request"
        ),
        Err(e) => tracing::warn!(
            target: "tcodec::audit",
            user, auth = method, namespace = %namespace, endpoint = endpoint.as_str(),
            payloads = count, status = status.as_u16(), code = e.code, error = %e.message,
            latency_ms = latency.as_secs_f64() * 1e3,
            "codec request failed"
        ),
    }
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

type Outcome = (Result<Vec<u8>, AppError>, Option<Identity>, usize);

async fn handle(
    state: &AppState,
    endpoint: Endpoint,
    namespace: &str,
    peer: Option<&PeerInfo>,
    request: Request,
) -> Outcome {
    let (parts, body) = request.into_parts();
    let identity = match state.auth.authenticate(&parts.headers, peer).await {
        Ok(i) => i,
        Err(e) => {
            tracing::info!(target: "tcodec::audit", reason = %e, "authentication failed");
            return (
                Err(AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "valid credentials are required",
                )),
                None,
                0,
            );
        }
    };
    let result = run(state, endpoint, namespace, &identity, &parts.headers, body).await;
    let count = result.as_ref().map(|(_, n)| *n).unwrap_or(0);
    (result.map(|(body, _)| body), Some(identity), count)
}

async fn run(
    state: &AppState,
    endpoint: Endpoint,
    namespace: &str,
    identity: &Identity,
    _headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, usize), AppError> {
    if namespace.is_empty() {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "missing_namespace",
            "the X-Namespace header is required",
        ));
    }
    let ns = state.namespaces.get(namespace).ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "unknown_namespace",
            format!("namespace {namespace:?} is not served here"),
        )
    })?;
    let access = match endpoint {
        Endpoint::Encode => Access::Write,
        Endpoint::Decode => Access::Read,
    };
    if !authorized(identity, namespace, &ns.config, access) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not {} in namespace {namespace:?}",
                identity.user,
                endpoint.as_str()
            ),
        ));
    }
    let bytes = axum::body::to_bytes(body, state.limits.max_body_bytes)
        .await
        .map_err(|_| {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body exceeds {} bytes",
                    state.limits.max_body_bytes
                ),
            )
        })?;
    let max_payloads = state.limits.max_payloads;
    // A small request (what the UI and CLI send) is answered right here when
    // its keys are in memory and nothing needs decompressing: microseconds of
    // CPU, and no hand-off to another thread and back, which would cost more
    // than the work. Anything else (a large body, a key to fetch from the file
    // or KMS, a layer to decompress) goes to a blocking thread, off the async
    // workers, where the whole request is parsed, decoded and answered on one
    // thread so that its data stays in one core's cache.
    let inline = if bytes.len() <= INLINE_MAX_BODY {
        match process(&ns.inline_codec, endpoint, &bytes, max_payloads) {
            Err(ProcessError::Codec(e)) if e.is_deferred() => None,
            outcome => Some(outcome),
        }
    } else {
        None
    };
    state.metrics.work(inline.is_some());
    let outcome = match inline {
        Some(outcome) => outcome,
        None => {
            let codec = Arc::clone(&ns.codec);
            tokio::task::spawn_blocking(move || process(&codec, endpoint, &bytes, max_payloads))
                .await
                .map_err(|_| {
                    AppError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the codec task failed",
                    )
                })?
        }
    };
    match outcome {
        Ok((body, count)) => {
            state.metrics.payloads(endpoint, count);
            Ok((body, count))
        }
        Err(ProcessError::Codec(e)) => {
            let err = codec_error(&e);
            state.metrics.failure(err.code);
            Err(err)
        }
        Err(ProcessError::Json(e)) => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not {{\"payloads\": [...]}} JSON: {e}"),
        )),
        Err(e @ ProcessError::TooManyPayloads { .. }) => Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_payloads",
            e.to_string(),
        )),
        Err(ProcessError::Payload(e)) => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed_base64",
            e.to_string(),
        )),
        Err(ProcessError::Write(_)) => Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot write the response",
        )),
    }
}
