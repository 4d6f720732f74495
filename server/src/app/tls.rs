//! TLS for the gRPC port: the server's identity and, optionally, the CA that
//! client certificates must chain to (mTLS).
//!
//! Invariants:
//! - TLS is on exactly when [`ENV_TLS_CERT`] and [`ENV_TLS_KEY`] are both set;
//!   one without the other, or [`ENV_TLS_CLIENT_CA`] without them, is a
//!   configuration error. With TLS on, the port speaks only TLS: messenger,
//!   health and reflection alike.
//! - With a client CA, a client that presents no certificate, or one that does
//!   not chain to it, fails the handshake.
//! - Every PEM problem is reported with the file and variable it came from
//!   ([`messenger_runtime::tls`]). The files are read once, by `App::bind`,
//!   which also has rustls check that the key fits the certificate.

use crate::app::config::{Config, ENV_TLS_CERT, ENV_TLS_CLIENT_CA, ENV_TLS_KEY};
use messenger_runtime::tls::{
    TlsAcceptor, TlsError, pair, read_certificate_ders, read_identity_files, server_acceptor,
};

/// Reads the TLS files into the gRPC port's TLS acceptor; `None` for
/// plaintext.
pub(crate) fn server_config(config: &Config) -> Result<Option<TlsAcceptor>, TlsError> {
    let identity = pair(
        (ENV_TLS_CERT, config.tls_cert.as_deref()),
        (ENV_TLS_KEY, config.tls_key.as_deref()),
    )?;
    let Some((cert, key)) = identity else {
        return match config.tls_client_ca {
            Some(_) => Err(TlsError::Incomplete {
                set: ENV_TLS_CLIENT_CA,
                missing: ENV_TLS_CERT,
            }),
            None => Ok(None),
        };
    };
    let identity = read_identity_files((ENV_TLS_CERT, cert), (ENV_TLS_KEY, key))?;
    let client_ca = (config.tls_client_ca.as_deref())
        .map(|ca| read_certificate_ders(ENV_TLS_CLIENT_CA, ca))
        .transpose()?;
    server_acceptor(identity, client_ca).map(Some)
}
