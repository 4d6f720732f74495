//! The Redis client for the configured broker URL: TLS trust for a
//! `rediss://` broker with a private CA, and the URL as logs and errors show
//! it, without credentials.

use super::BrokerConfigError;
use crate::config::ENV_BROKER_URL;
use std::path::Path;

/// `scheme://host:port/db` of `url` without user or password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<broker>".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    format!("{scheme}://{rest}")
}

/// The client for `url`, trusting the PEM CA bundle at `ca` when given (a
/// `rediss://` URL only: a CA for a plaintext broker is a mistake).
pub(super) fn client(url: &str, ca: Option<&Path>) -> Result<redis::Client, BrokerConfigError> {
    let Some(path) = ca else {
        return redis::Client::open(url).map_err(BrokerConfigError::Url);
    };
    let bad = |why: String| BrokerConfigError::Ca {
        path: path.to_owned(),
        why,
    };
    if !url.starts_with("rediss://") {
        return Err(bad(format!("a CA needs a rediss:// {ENV_BROKER_URL}")));
    }
    messenger_runtime::tls::read_certificate_ders(crate::config::ENV_BROKER_CA, path)?;
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    redis::Client::build_with_tls(url, certs)
        .map_err(|e| bad(format!("not a usable PEM CA bundle ({e})")))
}
