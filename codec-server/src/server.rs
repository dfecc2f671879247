//! Putting the router on a socket: plain HTTP (loopback) or TLS via rustls,
//! optional client certificates (mTLS), and graceful shutdown that lets
//! in-flight requests finish.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tcodec::{Codec, CodecOptions};
use tcodec_keys::FileKeyring;
use tcodec_keys::kek::KekSettings;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::{Authenticator, PeerInfo};
use crate::config::{Config, TlsConfig};
use crate::metrics::Metrics;
use crate::routes::{AppState, Namespace, app};

/// How often keyring files are checked for changes.
const KEYRING_POLL: Duration = Duration::from_secs(2);
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens every namespace's keyring and sets up authentication.
pub fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let settings = KekSettings {
        master_key_file: config.kek.master_key_file.clone(),
        kms_endpoint: config.kek.kms_endpoint.clone(),
        kms_region: config.kek.kms_region.clone(),
    };
    let mut kms_needed = false;
    for ns in config.namespaces.values() {
        let doc = tcodec_keys::store::read(&ns.keyring)?;
        kms_needed |= doc.keys().iter().any(|k| k.kek.provider == "aws-kms");
    }
    let keks = settings.keks(kms_needed)?;
    let mut namespaces = BTreeMap::new();
    // No payload decodes to more than a request may carry, so a small
    // compressed payload cannot make the server allocate without bound.
    let codec_options = CodecOptions::default().with_max_decoded_size(config.limits.max_body_bytes);
    for (name, ns) in &config.namespaces {
        let keyring = FileKeyring::open(&ns.keyring, keks.clone())
            .with_context(|| format!("namespace {name}"))?;
        let watcher = keyring.watch(KEYRING_POLL);
        namespaces.insert(
            name.clone(),
            Namespace {
                codec: Arc::new(Codec::with_options(
                    Arc::new(keyring.clone()),
                    codec_options.clone(),
                )),
                inline_codec: Codec::with_options(
                    Arc::new(keyring.in_memory()),
                    codec_options.clone().with_deferred_decompression(true),
                ),
                keyring,
                config: ns.clone(),
                _watcher: Some(watcher),
            },
        );
    }
    Ok(AppState {
        namespaces,
        auth: Authenticator::new(&config.auth)?,
        limits: config.limits.clone(),
        cors: config.cors.clone(),
        metrics: Metrics::default(),
    })
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// The rustls acceptor for `tls`, requiring client certificates when a client
/// CA is configured.
pub fn tls_acceptor(tls: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = load_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("cannot read the private key from {}", tls.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).context("bad client CA certificate")?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The names in a client certificate: subject CN first, then DNS SANs.
fn client_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
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
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => {
                    let peer = PeerInfo {
                        addr,
                        client_names: Vec::new(),
                    };
                    serve_connection(stream, peer, router, watcher).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
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
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for in-flight requests"),
    }
    Ok(())
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

/// `tcodec serve`: everything from the configuration.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let state = Arc::new(build_state(&config)?);
    if let Err(e) = state.auth.prepare().await {
        tracing::warn!(error = %e, "cannot fetch the JWKS yet; /readyz stays false until it can");
    }
    state.auth.start_background();
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %listener.local_addr()?,
        namespaces = ?state.namespaces.keys().collect::<Vec<_>>(),
        auth = ?config.auth.mode,
        "tcodec codec server listening on {scheme}://{}",
        listener.local_addr()?
    );
    serve(listener, tls, app(state), shutdown_signal()).await
}
