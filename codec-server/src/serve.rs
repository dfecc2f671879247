//! Putting the router on a socket: plain HTTP (loopback) or TLS via rustls,
//! optional client certificates (mTLS), and graceful shutdown that lets
//! in-flight requests finish.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::{AppState, app};
use crate::auth::PeerInfo;
use crate::auth::mtls::client_names;
use crate::config::{Config, TlsConfig};
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

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        tokio::spawn(connection(stream, addr, tls, router, watcher));
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
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        let peer = PeerInfo {
            addr,
            client_names: Vec::new(),
        };
        return serve_connection(stream, peer, router, watcher).await;
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
    serve_connection(tls_stream, peer, router, watcher).await;
}

/// Serves HTTP/1 or HTTP/2 on one connection, with `peer` in every request's
/// extensions, until the client leaves or graceful shutdown ends it.
async fn serve_connection<I>(
    io: I,
    peer: PeerInfo,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(peer.clone());
        request
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
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
    serve(listener, tls, app(state), shutdown_signal()).await;
    Ok(())
}
