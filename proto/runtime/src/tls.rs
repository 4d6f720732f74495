//! TLS material from PEM files, and the client side of TLS, shared by every
//! gRPC caller (the HTTP client, tests, a health-check command).
//!
//! Owns: reading and validating PEM certificates and keys (each error names
//! the file and the variable it came from), and turning a server address plus
//! optional CA / client certificate / key into a [`GrpcTarget`] (a tonic
//! endpoint with our own rustls connector, [`connector`]); which server
//! certificates are accepted ([`pinned`]); and which connection failures are
//! a misconfiguration, with the fix ([`diagnose`]).
//!
//! Invariants:
//! - A file that is unreadable, holds no PEM item of the expected kind, or
//!   holds malformed PEM is an error here, not a silent empty trust store.
//! - TLS is used exactly when a TLS file is given or the address is
//!   `https://`; `https://` without a CA file trusts the webpki roots.
//!   An explicit `http://` address together with TLS files is an error, never
//!   a silent downgrade to plaintext.
//! - A certificate in the CA file is trusted as a CA and also as the
//!   server's own certificate, so the self-signed `openssl req -x509`
//!   one-liner works as both (see [`pinned`]).
//! - Nothing here logs, and no key material appears in an error message.

mod acceptor;
mod alert;
pub mod connector;
pub mod diagnose;
mod files;
mod pinned;

pub use acceptor::server_acceptor;
pub use connector::{ClientTls, GrpcTarget, HandshakeError};
pub use diagnose::{Misconfiguration, Peer, Trust, misconfiguration, of_peer};
pub use files::{
    IdentityFiles, pair, read_certificate_ders, read_certificates, read_identity,
    read_identity_files,
};
pub use tokio_rustls::TlsAcceptor;

use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Endpoint, Uri};

/// The server's address: `host:port`, `http://host:port` or `https://host:port`.
pub const ENV_SERVER_ADDR: &str = "MESSENGER_SERVER_ADDR";
/// The server's certificate chain (PEM).
pub const ENV_TLS_CERT: &str = "MESSENGER_TLS_CERT";
/// Private key (PEM) of [`ENV_TLS_CERT`].
pub const ENV_TLS_KEY: &str = "MESSENGER_TLS_KEY";
/// CA bundle (PEM) the server requires client certificates to chain to (mTLS).
pub const ENV_TLS_CLIENT_CA: &str = "MESSENGER_TLS_CLIENT_CA";
/// CA bundle (PEM) the client trusts for the server's certificate.
pub const ENV_SERVER_CA: &str = "MESSENGER_SERVER_CA";
/// Client certificate chain (PEM) presented to a server that asks (mTLS).
pub const ENV_CLIENT_CERT: &str = "MESSENGER_CLIENT_CERT";
/// Private key (PEM) of [`ENV_CLIENT_CERT`].
pub const ENV_CLIENT_KEY: &str = "MESSENGER_CLIENT_KEY";

/// Bound on one TLS handshake, client or server side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {var} file {path}: {source}")]
    Read {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var} file {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { var: &'static str, path: PathBuf },
    #[error("{var} file {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { var: &'static str, path: PathBuf },
    #[error("{var} file {path} is not valid PEM: {reason}")]
    InvalidPem {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "{key_var} file {key} is not the private key of the certificate in {cert_var} file {cert}"
    )]
    KeyMismatch {
        key_var: &'static str,
        key: PathBuf,
        cert_var: &'static str,
        cert: PathBuf,
    },
    #[error("{var} file {path} cannot be used: {reason}")]
    UnusableCertificate {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{set} is set but {missing} is not; set both or neither")]
    Incomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "the server address {addr} is plaintext http:// but TLS files are set; use https:// or host:port"
    )]
    PlaintextAddress { addr: String },
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] tonic::transport::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// The client's TLS files: [`ENV_SERVER_CA`], [`ENV_CLIENT_CERT`],
/// [`ENV_CLIENT_KEY`]; flags and variables of every binary that calls the
/// server (`#[command(flatten)]`: the client, and the server's healthcheck).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ClientTlsFiles {
    /// CA bundle (PEM) that signed the server's certificate; connects with
    /// TLS. A certificate in it is also accepted as the server's own
    /// (pinned), so a self-signed server certificate can be its own CA file.
    /// Without it, https:// trusts the webpki roots.
    #[arg(long = "server-ca", env = ENV_SERVER_CA)]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) to present when the server asks (mTLS).
    #[arg(long = "client-cert", env = ENV_CLIENT_CERT)]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long = "client-key", env = ENV_CLIENT_KEY)]
    pub key: Option<PathBuf>,
}

impl ClientTlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The TLS config these files describe, `None` when none is set. Without
    /// a CA file the webpki roots are trusted.
    pub fn load(&self) -> Result<Option<ClientTls>, TlsError> {
        let identity = pair(
            (ENV_CLIENT_CERT, self.cert.as_deref()),
            (ENV_CLIENT_KEY, self.key.as_deref()),
        )?;
        if self.is_empty() {
            return Ok(None);
        }
        let ca = match &self.ca {
            Some(ca) => Some((ca.clone(), read_certificate_ders(ENV_SERVER_CA, ca)?)),
            None => None,
        };
        let identity = match identity {
            Some((cert, key)) => {
                let files = read_identity_files((ENV_CLIENT_CERT, cert), (ENV_CLIENT_KEY, key))?;
                Some((files.chain, files.key))
            }
            None => None,
        };
        ClientTls::new(ca, identity).map(Some)
    }
}

/// The target for `uri` (scheme `http` or `https`): TLS with `tls` when
/// given (a `http` scheme that came from a bare `host:port` must already be
/// rewritten by the caller, see [`with_https`]), TLS with the webpki roots
/// for `https` without `tls`, plaintext otherwise.
pub fn endpoint(uri: Uri, tls: Option<ClientTls>) -> Result<GrpcTarget, TlsError> {
    let https = uri.scheme_str() == Some("https");
    match (tls, https) {
        (Some(_), false) => Err(TlsError::PlaintextAddress {
            addr: uri.to_string(),
        }),
        (Some(tls), true) => GrpcTarget::tls(uri, tls),
        (None, true) => GrpcTarget::tls(uri, ClientTls::new(None, None)?),
        (None, false) => Ok(GrpcTarget::plaintext(Endpoint::from(uri))),
    }
}

/// `uri` with its scheme replaced by `https`.
pub fn with_https(uri: &Uri) -> Uri {
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("messenger-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn errors_name_the_file_and_variable() {
        let missing = Path::new("/nonexistent/ca.pem");
        let e = read_certificates(ENV_SERVER_CA, missing).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TlsError::Read { .. }), "{msg}");
        assert!(
            msg.contains(ENV_SERVER_CA) && msg.contains("/nonexistent/ca.pem"),
            "{msg}"
        );

        let empty = temp_file("empty.pem", "not pem at all\n");
        let e = read_certificates(ENV_SERVER_CA, &empty).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");

        let broken = temp_file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = read_certificates(ENV_SERVER_CA, &broken).unwrap_err();
        assert!(matches!(e, TlsError::InvalidPem { .. }), "{e}");
    }

    #[test]
    fn half_a_pair_is_an_error() {
        let p = Path::new("x");
        assert!(pair(("C", None), ("K", None)).unwrap().is_none());
        assert!(pair(("C", Some(p)), ("K", Some(p))).unwrap().is_some());
        let e = pair(("C", Some(p)), ("K", None)).unwrap_err().to_string();
        assert_eq!(e, "C is set but K is not; set both or neither");
        let e = pair(("C", None), ("K", Some(p))).unwrap_err().to_string();
        assert_eq!(e, "K is set but C is not; set both or neither");
    }

    #[test]
    fn plaintext_endpoint_unless_tls_or_https() {
        let none = ClientTlsFiles::default();
        assert!(none.load().unwrap().is_none());
        let plain: Uri = "http://127.0.0.1:1".parse().unwrap();
        assert!(endpoint(plain.clone(), None).is_ok());
        let tls = ClientTls::new(None, None).unwrap();
        assert!(matches!(
            endpoint(plain.clone(), Some(tls.clone())),
            Err(TlsError::PlaintextAddress { .. })
        ));
        assert_eq!(with_https(&plain).to_string(), "https://127.0.0.1:1/");
        assert!(endpoint(with_https(&plain), Some(tls)).is_ok());
    }
}
