//! The endpoints: `POST …/encode` and `POST …/decode` under any path prefix,
//! `/healthz`, `/readyz`, `/metrics`; and the one error answer they all use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tcodec::storage::{S3Location, StorageConfig, StorageError};
use tcodec::{CodecError, display_chain as chain};
use tcodec_json::{
    Direction, Limits, ProcessError, References, Storage, Stored, process, process_with, references,
};
use tcodec_keys::KeyError;

use crate::app::{AppState, Namespace};
use crate::auth::{Access, Identity, PeerInfo, authorized};
use crate::escaped::Escaped;

/// Sets its flag when dropped: the blocking work it was given to stops.
#[derive(Default)]
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The largest request body answered on the async workers (see
/// [`answer`]): tens of microseconds of work to decode, a few hundred at most
/// to encode with compression.
pub const INLINE_MAX_BODY: usize = 64 << 10;

/// An error answer: a status, a stable code, and a message safe to show.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    /// An answer with `status`, the stable `code` clients may switch on, and
    /// `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404 for a path that is no endpoint.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    fn internal(message: &'static str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
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

impl From<ProcessError> for AppError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Codec(e) => codec_error(&e),
            ProcessError::Storage(e) => storage_error(&e),
            ProcessError::Json(e) => AppError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not {{\"payloads\": [...]}} JSON: {e}"),
            ),
            e @ ProcessError::TooManyPayloads { .. } => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_payloads",
                e.to_string(),
            ),
            e @ ProcessError::AnswerTooLarge { .. } => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "answer_too_large",
                e.to_string(),
            ),
            ProcessError::Cancelled { .. } => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cancelled",
                "the request was cancelled",
            ),
            ProcessError::Payload(e) => {
                AppError::new(StatusCode::BAD_REQUEST, "malformed_base64", e.to_string())
            }
            _ => AppError::internal("cannot write the response"),
        }
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
        CodecError::Malformed { .. } | CodecError::MalformedForeign { .. } => {
            (StatusCode::BAD_REQUEST, "malformed_payload")
        }
        CodecError::NotSealed { .. } => (StatusCode::BAD_REQUEST, "not_allowed"),
        CodecError::TooLarge { .. } => (StatusCode::BAD_REQUEST, "payload_too_large"),
        CodecError::OverBudget { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    AppError::new(status, code, chain(e))
}

fn storage_error(e: &StorageError) -> AppError {
    let (status, code) = match e {
        StorageError::NotConfigured { .. } => (StatusCode::BAD_REQUEST, "storage_not_configured"),
        StorageError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_reference"),
        StorageError::Refused { .. } => (StatusCode::BAD_REQUEST, "reference_refused"),
        StorageError::Missing { .. } => (StatusCode::NOT_FOUND, "stored_payload_missing"),
        StorageError::Tampered { .. } => (StatusCode::BAD_REQUEST, "stored_payload_invalid"),
        StorageError::TooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "stored_payload_too_large")
        }
        StorageError::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
        StorageError::Failed { .. } => (StatusCode::BAD_GATEWAY, "storage_failed"),
        StorageError::OverBudget { .. } => {
            let message = format!("{e} (limits.max_decoded_bytes)");
            return AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "stored_payloads_too_large",
                message,
            );
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    AppError::new(status, code, e.to_string())
}

/// The codec endpoints, named by a path's last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/encode`: seal, and store what is over the threshold.
    Encode,
    /// `/decode`: open, and fetch what references name (unless asked to
    /// preserve them).
    Decode,
    /// `/download`: fetch what references name and open it; references only.
    Download,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        match path.rsplit('/').next() {
            Some("encode") => Some(Self::Encode),
            Some("decode") => Some(Self::Decode),
            Some("download") => Some(Self::Download),
            _ => None,
        }
    }

    /// `encode`, `decode` or `download`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode => "decode",
            Self::Download => "download",
        }
    }

    /// Which way its payloads go.
    pub fn direction(self) -> Direction {
        match self {
            Self::Encode => Direction::Encode,
            Self::Decode | Self::Download => Direction::Decode,
        }
    }
}

/// Whether the query asks `/decode` to hand references back as they are.
fn preserves_storage_refs(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|pair| {
        pair.split_once('=')
            .is_some_and(|(k, v)| k == "preserveStorageRefs" && v.eq_ignore_ascii_case("true"))
    })
}

/// `/readyz`: the cached readiness report ([`crate::readiness`]), as a
/// status and counts only. The first probe starts the background check if
/// `tcodec serve` has not.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    state.start_readiness();
    let report = state.readiness.report();
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": report.ready(),
        "checked": report.checked,
        "problems": report.problems.len(),
        "warnings": report.warnings.len(),
    });
    (status, Json(body)).into_response()
}

/// The Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// What a codec request came to: the answer or the error, who asked (when
/// they were authenticated), and how many payloads it held.
struct Outcome {
    result: Result<Vec<u8>, AppError>,
    who: Option<Identity>,
    payloads: usize,
}

impl Outcome {
    fn failed(error: AppError, who: Option<Identity>) -> Self {
        Self {
            result: Err(error),
            who,
            payloads: 0,
        }
    }
}

/// `POST …/encode`, `POST …/decode` and `POST …/download`, the endpoint named
/// by the path's last segment. The request timeout is applied here rather than by tower-http's
/// timeout layer so that a request that runs out of time still gets its JSON
/// error, its audit line and its metrics.
pub async fn codec_endpoint(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let Some(endpoint) = Endpoint::from_path(request.uri().path()) else {
        state.metrics.request("other", 404, None);
        return AppError::not_found().into_response();
    };
    let direction = endpoint.direction();
    let preserve = endpoint == Endpoint::Decode && preserves_storage_refs(request.uri().query());
    let _in_flight = state.metrics.in_flight();
    let peer = peer.map(|Extension(p)| p);
    let namespace = request
        .headers()
        .get("x-namespace")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let work = handle(
        &state,
        endpoint,
        preserve,
        &namespace,
        peer.as_ref(),
        request,
    );
    let outcome = match tokio::time::timeout(state.limits.request_timeout(), work).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::failed(
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long",
            ),
            None,
        ),
    };
    let latency = started.elapsed();
    let status = match &outcome.result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    state.metrics.request(
        endpoint.as_str(),
        status.as_u16(),
        Some((direction, latency)),
    );
    audit(&outcome, &namespace, endpoint, status, latency);
    match outcome.result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The audit line: who, which namespace, what, how many, how it went.
fn audit(
    outcome: &Outcome,
    namespace: &str,
    endpoint: Endpoint,
    status: StatusCode,
    latency: Duration,
) {
    let user = Escaped(outcome.who.as_ref().map(|i| i.user.as_str()).unwrap_or("-"));
    let method = outcome
        .who
        .as_ref()
        .map(|i| i.method.as_str())
        .unwrap_or("-");
    let (endpoint, payloads, status) = (endpoint.as_str(), outcome.payloads, status.as_u16());
    let latency_ms = latency.as_secs_f64() * 1e3;
    match &outcome.result {
        Ok(_) => tracing::info!(
            target: "tcodec::audit",
            user = %user, auth = method, namespace = %Escaped(namespace), endpoint,
            payloads, status, latency_ms,
            "codec request"
        ),
        Err(e) => tracing::warn!(
            target: "tcodec::audit",
            user = %user, auth = method, namespace = %Escaped(namespace), endpoint,
            payloads, status, code = e.code, error = %Escaped(&e.message), latency_ms,
            "codec request failed"
        ),
    }
}

/// Authenticates, authorizes and answers one codec request.
async fn handle(
    state: &AppState,
    endpoint: Endpoint,
    preserve: bool,
    namespace: &str,
    peer: Option<&PeerInfo>,
    request: Request,
) -> Outcome {
    let (parts, body) = request.into_parts();
    let identity = match state.auth.authenticate(&parts.headers, peer).await {
        Ok(i) => i,
        Err(e) => {
            let reason = e.to_string();
            tracing::info!(target: "tcodec::audit", reason = %Escaped(&reason), "authentication failed");
            let error = AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "valid credentials are required",
            );
            return Outcome::failed(error, None);
        }
    };
    let request = Asked {
        endpoint,
        preserve,
        namespace,
        who: &identity,
    };
    let result = match authorize(state, endpoint.direction(), namespace, &identity) {
        Ok(ns) => answer(state, ns, &request, body).await,
        Err(e) => Err(e),
    };
    let payloads = result.as_ref().map(|(_, n)| *n).unwrap_or(0);
    Outcome {
        result: result.map(|(body, _)| body),
        who: Some(identity),
        payloads,
    }
}

/// The namespace the request names, if `identity` may use it this way.
fn authorize<'s>(
    state: &'s AppState,
    direction: Direction,
    namespace: &str,
    identity: &Identity,
) -> Result<&'s Namespace, AppError> {
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
    let access = match direction {
        Direction::Encode => Access::Write,
        Direction::Decode => Access::Read,
    };
    if !authorized(identity, namespace, &ns.config, access) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not {direction} in namespace {namespace:?}",
                identity.user
            ),
        ));
    }
    Ok(ns)
}

/// What a request asks, once authenticated.
struct Asked<'a> {
    endpoint: Endpoint,
    preserve: bool,
    namespace: &'a str,
    who: &'a Identity,
}

/// Reads the body (up to the limit) and runs the codec over it.
///
/// A small request (what the UI and CLI send) is answered right here when its
/// keys are in memory and nothing needs decompressing: microseconds of CPU,
/// and no hand-off to another thread and back, which would cost more than the
/// work. Anything else (a large body, a key to fetch from the file or KMS, a
/// layer to decompress) goes to a blocking thread, off the async workers,
/// where the whole request is parsed, decoded and answered on one thread so
/// that its data stays in one core's cache.
///
/// The body limit is checked here rather than by tower-http's limit layer so
/// that the 413 carries the same JSON error as every other answer.
async fn answer(
    state: &AppState,
    ns: &Namespace,
    asked: &Asked<'_>,
    body: Body,
) -> Result<(Vec<u8>, usize), AppError> {
    let direction = asked.endpoint.direction();
    let max_body = state.limits.max_body_bytes;
    let bytes = axum::body::to_bytes(body, max_body).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds {max_body} bytes"),
        )
    })?;
    let limits = Limits {
        max_payloads: state.limits.max_payloads,
        max_decoded_bytes: state.limits.max_decoded_bytes(),
        max_answer_bytes: state.limits.max_answer_bytes(),
        cancelled: None,
    };
    let (references, store) = storage_step(state, ns, asked, &bytes).await?;
    let storing = store.is_some();
    let fetched = matches!(references, References::Fetched(_));
    let inline = if bytes.len() <= INLINE_MAX_BODY && !storing && !fetched {
        match process(&ns.inline_codec, direction, &bytes, &limits) {
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
            // Dropped with this future (the request timed out, the client
            // left): the work stops at its next payload.
            let cancel = CancelOnDrop::default();
            let cancelled = Arc::clone(&cancel.0);
            let running = state.metrics.blocking_work();
            tokio::task::spawn_blocking(move || {
                let _running = running;
                let limits = Limits {
                    cancelled: Some(&cancelled),
                    ..limits
                };
                let storage = Storage {
                    references,
                    store: store.as_ref(),
                };
                let outcome = process_with(&codec, direction, &bytes, &limits, storage);
                if let Err(ProcessError::Cancelled { done, of }) = &outcome {
                    tracing::info!(
                        done,
                        of,
                        "stopped the codec work of a request that timed out or whose client left"
                    );
                }
                outcome
            })
            .await
            .map_err(|_| AppError::internal("the codec task failed"))?
        }
    };
    match outcome {
        Ok(answer) => {
            store_all(state, ns, asked, answer.stored).await?;
            state.metrics.payloads(direction, answer.payloads);
            Ok((answer.body, answer.payloads))
        }
        Err(ProcessError::Codec(e)) => {
            let error = codec_error(&e);
            state.metrics.failure(error.code);
            Err(error)
        }
        Err(e) => Err(AppError::from(e)),
    }
}

/// References one request may ask to fetch.
pub const MAX_REFERENCES: usize = 100;

/// What External Storage does for this request: `/encode` stores (the
/// configuration, if the namespace has one); `/decode` (unless preserving)
/// and `/download` fetch every reference the request holds, each permitted
/// by the namespace's configuration before the first request leaves.
async fn storage_step(
    state: &AppState,
    ns: &Namespace,
    asked: &Asked<'_>,
    body: &[u8],
) -> Result<(References, Option<StorageConfig>), AppError> {
    match asked.endpoint {
        Endpoint::Encode => {
            return Ok((
                References::Keep,
                ns.storage.as_ref().map(|s| s.config().clone()),
            ));
        }
        Endpoint::Decode if asked.preserve => return Ok((References::Keep, None)),
        Endpoint::Decode | Endpoint::Download => {}
    }
    let (count, found) = references(body, state.limits.max_payloads)?;
    if asked.endpoint == Endpoint::Download {
        let first_other = (0..count).find(|i| found.get(*i).is_none_or(|(at, _)| at != i));
        if let Some(index) = first_other {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "not_a_reference",
                format!(
                    "payload {index}: is not an External Storage reference; /download takes references only"
                ),
            ));
        }
        if count == 0 {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "not_a_reference",
                "/download takes one or more External Storage references",
            ));
        }
    }
    if found.is_empty() {
        return Ok((References::Keep, None));
    }
    if found.len() > MAX_REFERENCES {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_references",
            format!("more than {MAX_REFERENCES} External Storage references in one request"),
        ));
    }
    let failed = |e: StorageError| {
        let error = storage_error(&e);
        state.metrics.failure(error.code);
        error
    };
    let Some(store) = &ns.storage else {
        return Err(failed(StorageError::NotConfigured { index: found[0].0 }));
    };
    let locations = store
        .permit_all(found.iter().map(|(index, reference)| (*index, reference)))
        .map_err(failed)?;
    // No more bytes fetched, nor decoded over all its references, than one
    // request may decode.
    let budget = state.limits.max_decoded_bytes();
    let fetched = store
        .fetch_each(&locations, budget, |location, took, outcome| {
            let outcome = outcome.map_err(storage_error);
            storage_audit(state, asked, "fetch", location, took, &outcome);
        })
        .await
        .map_err(failed)?;
    Ok((References::Fetched(fetched), None))
}

/// Stores what `/encode` replaced by references, all before the answer
/// goes: a failure fails the request (the references would name nothing).
async fn store_all(
    state: &AppState,
    ns: &Namespace,
    asked: &Asked<'_>,
    stored: Vec<Stored>,
) -> Result<(), AppError> {
    let Some(store) = &ns.storage else {
        return Ok(());
    };
    let objects = stored
        .into_iter()
        .map(|item| (item.index, item.location, item.object.into()))
        .collect();
    store
        .put_each(objects, |location, took, outcome| {
            let outcome = outcome.map_err(storage_error);
            storage_audit(state, asked, "store", location, took, &outcome);
        })
        .await
        .map_err(|e| {
            let error = storage_error(&e);
            state.metrics.failure(error.code);
            error
        })
}

/// The metrics and the audit line of one External Storage operation.
fn storage_audit(
    state: &AppState,
    asked: &Asked<'_>,
    operation: &'static str,
    location: &S3Location,
    took: Duration,
    outcome: &Result<usize, AppError>,
) {
    let latency_ms = took.as_secs_f64() * 1e3;
    let (user, auth) = (Escaped(&asked.who.user), asked.who.method.as_str());
    let (namespace, endpoint) = (Escaped(asked.namespace), asked.endpoint.as_str());
    let (bucket, key) = (Escaped(&location.bucket), Escaped(&location.key));
    match outcome {
        Ok(bytes) => {
            let bytes = *bytes;
            state.metrics.storage(operation, "ok", bytes);
            tracing::info!(
                target: "tcodec::audit",
                user = %user, auth, namespace = %namespace, endpoint, operation,
                bucket = %bucket, key = %key, bytes, latency_ms,
                "stored payload {operation}"
            );
        }
        Err(e) => {
            state.metrics.storage(operation, e.code, 0);
            tracing::warn!(
                target: "tcodec::audit",
                user = %user, auth, namespace = %namespace, endpoint, operation,
                bucket = %bucket, key = %key, code = e.code, error = %Escaped(&e.message), latency_ms,
                "stored payload {operation} failed"
            );
        }
    }
}
