//! Putting the router on a socket: plain HTTP (loopback) or TLS via rustls,
//! optional client certificates (mTLS), limits on what slow or idle clients
//! can hold (connections, header-read and idle timeouts), and graceful
//! shutdown that lets in-flight requests finish.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::{AppState, app};
use crate::auth::PeerInfo;
use crate::auth::mtls::client_names;
use crate::config::{Config, LimitsConfig, TlsConfig};
use crate::error::ServerError;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = |source| ServerError::Pem {
        what: "certificates",
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(ServerError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The rustls acceptor for `tls`, with `provider`'s cryptography, requiring
/// client certificates when a client CA is configured.
pub fn tls_acceptor(
    tls: &TlsConfig,
    provider: Arc<CryptoProvider>,
) -> Result<TlsAcceptor, ServerError> {
    let refused = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let certs = load_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|source| ServerError::Pem {
        what: "the private key",
        path: tls.key.clone(),
        source,
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(&e))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| refused(&format!("bad client CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| refused(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| refused(&format!("the certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What one client may hold: connections, and how long a connection may
/// wait for a request.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; the listener accepts no more until one closes.
    pub max_connections: usize,
    /// Time to send a request's headers, and, before a connection's first
    /// request, to start one at all.
    pub header_read_timeout: Duration,
    /// A connection with no request started or in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `[limits]` configures.
    pub fn from_config(limits: &LimitsConfig) -> Self {
        Self {
            max_connections: limits.max_connections,
            header_read_timeout: limits.header_read_timeout(),
            idle_timeout: limits.idle_timeout(),
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::from_config(&LimitsConfig::default())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the connection: at the cap, new connections
        // wait in the kernel's backlog rather than in our memory.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(stream, addr, tls, router, limits, watcher).await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for in-flight requests"),
    }
}

/// One accepted connection: its TLS handshake (bounded in time) when TLS is
/// on, then HTTP on it.
async fn connection(
    stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        let peer = PeerInfo {
            addr,
            client_names: Vec::new(),
        };
        return serve_connection(stream, peer, router, limits, watcher).await;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
    let Ok(Ok(tls_stream)) = handshake else {
        tracing::debug!(%addr, "TLS handshake failed or timed out");
        return;
    };
    let client_names = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(client_names)
        .unwrap_or_default();
    let peer = PeerInfo { addr, client_names };
    serve_connection(tls_stream, peer, router, limits, watcher).await;
}

/// Requests in flight on one connection, and when the last one ended (or
/// the connection opened).
struct Activity(Mutex<(usize, Instant)>);

/// One request in flight; its drop marks the end.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new((0, Instant::now()))))
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        Busy(Arc::clone(self))
    }

    /// Since when the connection has had nothing in flight, if it has not.
    fn idle_since(&self) -> Option<Instant> {
        let (in_flight, since) = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (in_flight == 0).then_some(since)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= 1;
        state.1 = Instant::now();
    }
}

/// Resolves once the connection has had no request in flight for `first`
/// since it opened (no request at all yet) or for `idle` since its last
/// request ended. hyper's own header-read timer covers a kept-alive HTTP/1
/// connection; this covers what it cannot: a connection that has sent nothing
/// yet (hyper is still reading to tell HTTP/1 from HTTP/2) and HTTP/2.
async fn idle_for(activity: &Activity, first: Duration, idle: Duration) {
    let mut limit = first;
    loop {
        match activity.idle_since() {
            Some(since) if since.elapsed() >= limit => return,
            Some(since) => tokio::time::sleep_until(since + limit).await,
            None => {
                limit = idle;
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// Serves HTTP/1 or HTTP/2 on one connection, with `peer` in every request's
/// extensions, until the client leaves, graceful shutdown ends it, or it
/// idles past `limits`.
async fn serve_connection<I>(
    io: I,
    peer: PeerInfo,
    router: Router,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let requests = Arc::clone(&activity);
    let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let busy = requests.begin();
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(peer.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::select! {
        ended = watcher.watch(connection.into_owned()) => if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        },
        // Nothing is in flight: dropping the connection loses no request.
        () = idle_for(&activity, limits.header_read_timeout, limits.idle_timeout) => {
            tracing::debug!("closing an idle connection");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `tcodec serve`: everything from the configuration, TLS with `provider`'s
/// cryptography, until SIGTERM or Ctrl-C.
pub async fn run(config: Config, provider: Arc<CryptoProvider>) -> Result<(), ServerError> {
    let state = Arc::new(AppState::from_config(&config, Arc::clone(&provider))?);
    if let Err(e) = state.auth.prepare().await {
        tracing::warn!(error = %e, "cannot fetch the JWKS yet; /readyz stays false until it can");
    }
    state.auth.start_background();
    state.start_readiness();
    let tls = config
        .tls
        .as_ref()
        .map(|tls| tls_acceptor(tls, provider))
        .transpose()?;
    let listen = |source| ServerError::Listen {
        address: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(listen)?;
    let address = listener.local_addr().map_err(listen)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %address,
        namespaces = ?state.namespaces.keys().collect::<Vec<_>>(),
        auth = ?config.auth.mode,
        "tcodec codec server listening on {scheme}://{address}"
    );
    let limits = ConnectionLimits::from_config(&config.limits);
    serve(listener, tls, app(state), limits, shutdown_signal()).await;
    Ok(())
}
