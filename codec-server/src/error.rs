//! Why the codec server could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

use tcodec_keys::store::StoreError;

use crate::auth::AuthError;
use crate::config::ConfigError;

/// Why the codec server could not be set up or could not serve. Each names
/// the file, address or namespace concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A namespace's keyring could not be opened (or its KEKs set up).
    #[error("namespace {namespace}: cannot open its keyring")]
    Keyring {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Authentication could not be set up.
    #[error("cannot set up authentication")]
    Auth(#[from] AuthError),
    /// A PEM file (certificates or private key) could not be read.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// What was expected: certificates, a private key.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the TLS configuration (a certificate that does not
    /// match its key, a bad client CA).
    #[error("the TLS configuration is refused: {0}")]
    Tls(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}")]
    Listen {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
