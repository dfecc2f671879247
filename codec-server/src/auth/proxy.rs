//! `mode = "proxy"`: a trusted reverse proxy (oauth2-proxy and the like) has
//! authenticated the user and names them in a header. Only requests from the
//! configured proxy addresses are believed.

use axum::http::HeaderMap;

use super::{AuthError, AuthMethod, Identity, PeerInfo};
use crate::config::ProxyConfig;

/// The user the proxy names, if the request came through a trusted proxy.
pub fn authenticate(
    config: &ProxyConfig,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Identity, AuthError> {
    let peer = peer.ok_or(AuthError::Missing("unknown peer address"))?;
    if !config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer.addr.ip()))
    {
        return Err(AuthError::Invalid(format!(
            "request from {} did not come through a trusted proxy",
            peer.addr.ip()
        )));
    }
    let mut values = headers.get_all(config.user_header.as_str()).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return Err(AuthError::Invalid(format!(
            "the {} header is given more than once",
            config.user_header
        )));
    }
    let user = first
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(AuthError::Missing("the proxy named no user"))?;
    let mut identity = Identity::new(AuthMethod::Proxy, user.to_owned());
    identity.email = user.contains('@').then(|| user.to_owned());
    Ok(identity)
}
