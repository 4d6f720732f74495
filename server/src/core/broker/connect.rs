//! The Redis client for the configured broker URL: TLS trust for a
//! `rediss://` (or `rediss+sentinel://`) broker with a private CA or a client certificate, and the
//! URL as logs and errors show it, without credentials.

use super::{BrokerConfigError, BrokerSettings};
use crate::app::config::{ENV_BROKER_CA, ENV_BROKER_CERT, ENV_BROKER_KEY, ENV_BROKER_URL};
use messenger_runtime::tls::{self, Peer, Trust};

/// The broker as TLS diagnoses name it: our `MESSENGER_BROKER_*` variables,
/// and Redis's own settings (`tls-cert-file`, `tls-ca-cert-file`). The Redis
/// client takes no certificate verifier of ours, so nothing is pinned: a
/// self-signed CA certificate (the `openssl req -x509` default) is refused
/// even when it is in `MESSENGER_BROKER_CA`, and the message says how to
/// re-issue it.
const BROKER: Peer = Peer {
    what: "the broker",
    ca_var: ENV_BROKER_CA,
    addr_var: ENV_BROKER_URL,
    cert_setting: "tls-cert-file",
    cert_var: ENV_BROKER_CA,
    client_cert_var: ENV_BROKER_CERT,
    client_key_var: ENV_BROKER_KEY,
    client_ca_setting: "tls-ca-cert-file",
    pins: false,
};

/// "TLS misconfiguration (<the client's error>): ..." when `error` is a TLS failure a setting
/// explains, for the broker at `url` (redacted, so it has no userinfo; an
/// empty `url` when unknown).
pub(super) fn tls_misconfiguration(url: &str, error: &redis::RedisError) -> Option<String> {
    let host_port = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = host_port.split('/').next().unwrap_or_default();
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    // The client's own words too ("invalid peer certificate: UnknownIssuer"):
    // what a search for the error finds.
    tls::of_peer(error, &BROKER, host_port, host, Trust::Either)
        .map(|m| format!("TLS misconfiguration ({error}): {}", m.message))
}

/// `scheme://host:port/db` of `url` without user or password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<broker>".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    format!("{scheme}://{rest}")
}

/// The client for the configured plain broker URL (validated by the config
/// parser), with its TLS files ([`certificates`]).
pub(super) fn client(settings: &BrokerSettings) -> Result<redis::Client, BrokerConfigError> {
    let url = settings.url.as_str();
    match certificates(settings, url.starts_with("rediss://"))? {
        None => redis::Client::open(url).map_err(BrokerConfigError::Url),
        Some(certs) => redis::Client::build_with_tls(url, certs).map_err(BrokerConfigError::Tls),
    }
}

/// The broker's TLS files, for a TLS broker (`tls`; `rediss://` or
/// `rediss+sentinel://`) only (for a plaintext broker they are a mistake):
/// `MESSENGER_BROKER_CA` replaces the webpki roots with a private CA bundle;
/// `MESSENGER_BROKER_CERT`/`_KEY` (both or neither, the key checked against
/// the certificate) are presented to a broker that asks for a client
/// certificate. `None` when no file is set.
pub(super) fn certificates(
    settings: &BrokerSettings,
    tls: bool,
) -> Result<Option<redis::TlsCertificates>, BrokerConfigError> {
    let ca = settings.ca.as_deref();
    let identity = tls::pair(
        (ENV_BROKER_CERT, settings.cert.as_deref()),
        (ENV_BROKER_KEY, settings.key.as_deref()),
    )?;
    let var = match (ca, identity) {
        (None, None) => return Ok(None),
        (Some(_), _) => ENV_BROKER_CA,
        (None, Some(_)) => ENV_BROKER_CERT,
    };
    if !tls {
        return Err(BrokerConfigError::NotTls { var });
    }
    let root_cert = match ca {
        Some(path) => {
            tls::read_certificate_ders(ENV_BROKER_CA, path)?;
            Some(std::fs::read(path).map_err(|source| tls::TlsError::Read {
                var: ENV_BROKER_CA,
                path: path.to_owned(),
                source,
            })?)
        }
        None => None,
    };
    let client_tls = match identity {
        Some((cert, key)) => {
            let files = tls::read_identity_files((ENV_BROKER_CERT, cert), (ENV_BROKER_KEY, key))?;
            Some(redis::ClientTlsConfig {
                client_cert: files.cert_pem,
                client_key: files.key_pem,
            })
        }
        None => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}
