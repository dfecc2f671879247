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
use tcodec::{CodecError, display_chain as chain};
use tcodec_json::{Direction, Limits, ProcessError, process};
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

/// `POST …/encode` and `POST …/decode`, the endpoint named by the path's last
/// segment. The request timeout is applied here rather than by tower-http's
/// timeout layer so that a request that runs out of time still gets its JSON
/// error, its audit line and its metrics.
pub async fn codec_endpoint(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let direction = match request.uri().path().rsplit('/').next() {
        Some("encode") => Direction::Encode,
        Some("decode") => Direction::Decode,
        _ => {
            state.metrics.request("other", 404, None);
            return AppError::not_found().into_response();
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
    let work = handle(&state, direction, &namespace, peer.as_ref(), request);
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
        direction.as_str(),
        status.as_u16(),
        Some((direction, latency)),
    );
    audit(&outcome, &namespace, direction, status, latency);
    match outcome.result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The audit line: who, which namespace, what, how many, how it went.
fn audit(
    outcome: &Outcome,
    namespace: &str,
    direction: Direction,
    status: StatusCode,
    latency: Duration,
) {
    let user = Escaped(outcome.who.as_ref().map(|i| i.user.as_str()).unwrap_or("-"));
    let method = outcome
        .who
        .as_ref()
        .map(|i| i.method.as_str())
        .unwrap_or("-");
    let (endpoint, payloads, status) = (direction.as_str(), outcome.payloads, status.as_u16());
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
    direction: Direction,
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
    let result = match authorize(state, direction, namespace, &identity) {
        Ok(ns) => answer(state, ns, direction, body).await,
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
    direction: Direction,
    body: Body,
) -> Result<(Vec<u8>, usize), AppError> {
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
    let inline = if bytes.len() <= INLINE_MAX_BODY {
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
                let outcome = process(&codec, direction, &bytes, &limits);
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
