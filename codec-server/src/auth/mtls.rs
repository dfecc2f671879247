//! `mode = "mtls"`: the client certificate, verified by rustls against
//! `tls.client_ca` during the handshake, names the caller.

use rustls_pki_types::CertificateDer;

use super::{AuthError, AuthMethod, Identity, PeerInfo};

/// The caller the connection's client certificate names.
pub fn authenticate(peer: Option<&PeerInfo>) -> Result<Identity, AuthError> {
    let names = peer.map(|p| p.client_names.clone()).unwrap_or_default();
    let first = names
        .first()
        .cloned()
        .ok_or(AuthError::Missing("no client certificate"))?;
    let mut identity = Identity::new(AuthMethod::Mtls, first);
    identity.names = names;
    Ok(identity)
}

/// The names in a client certificate: subject CN first, then DNS SANs.
pub fn client_names(cert: &CertificateDer<'_>) -> Vec<String> {
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
