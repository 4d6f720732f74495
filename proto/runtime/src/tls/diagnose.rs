//! Tells a permanent TLS misconfiguration from a passing connection failure,
//! and says in one line which variable to fix and how.
//!
//! Permanent (retrying cannot help until someone changes a file or a
//! variable): the server's certificate is refused (unknown CA, wrong name,
//! expired, not yet valid, a CA used as the server's certificate without
//! being pinned), the server refuses our client certificate (or wants one and
//! gets none), the server does not speak TLS, or it does not agree on
//! HTTP/2. Everything else (refused or reset connections, timeouts) is
//! passing.
//!
//! A refusal of our certificate comes after the TLS 1.3 handshake; the
//! connector waits for it ([`super::alert`]), so it arrives here as a
//! [`HandshakeError::Tls`] like any refusal during the handshake.

use super::connector::{HandshakeError, rustls_error};
use super::{
    ENV_CLIENT_CERT, ENV_CLIENT_KEY, ENV_SERVER_ADDR, ENV_SERVER_CA, ENV_TLS_CERT,
    ENV_TLS_CLIENT_CA,
};
use rustls::{AlertDescription, CertificateError, Error as RustlsError};
use std::error::Error;
use std::path::Path;

/// A misconfiguration: the variable to fix and a one-line message naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misconfiguration {
    pub variable: &'static str,
    pub message: String,
}

/// The misconfiguration behind `error` (anything in its source chain: a
/// tonic `Status`, a transport error, a [`HandshakeError`], an I/O error from
/// rustls), or `None` when the failure may pass by itself.
pub fn misconfiguration(error: &(dyn Error + 'static)) -> Option<Misconfiguration> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(handshake) = e.downcast_ref::<HandshakeError>() {
            return of_handshake(handshake);
        }
        // After a TLS 1.3 handshake, a refused client certificate arrives as
        // an alert on the first read, inside hyper's I/O error.
        if let Some(source) = e.downcast_ref::<std::io::Error>().and_then(rustls_error) {
            return of_rustls(&source, "the server", "", None);
        }
        next = e.source();
    }
    None
}

fn of_handshake(e: &HandshakeError) -> Option<Misconfiguration> {
    match e {
        HandshakeError::Tls {
            addr,
            server_name,
            ca,
            source,
        } => of_rustls(
            source,
            &format!("the server at {addr}"),
            server_name,
            ca.as_deref(),
        ),
        HandshakeError::NoHttp2 { addr } => Some(Misconfiguration {
            variable: ENV_SERVER_ADDR,
            message: format!(
                "the server at {addr} speaks TLS but not HTTP/2 (no ALPN h2): it is not a gRPC server; \
                 point {ENV_SERVER_ADDR} at the messenger server"
            ),
        }),
        HandshakeError::Tcp { .. } | HandshakeError::Io { .. } | HandshakeError::Timeout { .. } => {
            None
        }
    }
}

fn of_rustls(
    e: &RustlsError,
    server: &str,
    name: &str,
    ca: Option<&Path>,
) -> Option<Misconfiguration> {
    let trusted = match ca {
        Some(path) => format!("{ENV_SERVER_CA} ({})", path.display()),
        None => format!("the public roots ({ENV_SERVER_CA} is not set)"),
    };
    let server_ca = |what: &str| Misconfiguration {
        variable: ENV_SERVER_CA,
        message: format!("{server} presented a certificate {what}"),
    };
    let server_cert = |what: &str| Misconfiguration {
        variable: ENV_TLS_CERT,
        message: format!("{server} presented a certificate {what}"),
    };
    let found = match e {
        RustlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                server_ca(&format!(
                    "not issued by a CA in {trusted}; set {ENV_SERVER_CA} to the CA file that issued it \
                 (or to the server's own certificate if it is self-signed)"
                ))
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let holds = match cert {
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        format!(" (it holds {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                Misconfiguration {
                    variable: ENV_SERVER_ADDR,
                    message: format!(
                        "{server} presented a certificate not valid for {name:?}{holds}; use a host it \
                         holds in {ENV_SERVER_ADDR}, or reissue the server's {ENV_TLS_CERT} with \
                         {name:?} in its subjectAltName"
                    ),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => server_cert(
                &format!("that has expired; renew the server's {ENV_TLS_CERT}"),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                server_cert(&format!(
                    "that is not valid yet; check both clocks, or the server's {ENV_TLS_CERT} dates"
                ))
            }
            _ if super::pinned::is_ca_used_as_end_entity(e) => server_ca(&format!(
                "that is a CA certificate (basicConstraints CA:TRUE) not in {trusted}; put that very \
                 certificate in {ENV_SERVER_CA} to pin it, or give the server a leaf certificate"
            )),
            other => server_ca(&format!(
                "that was refused ({other:?}); check it against {trusted}"
            )),
        },
        RustlsError::AlertReceived(AlertDescription::CertificateRequired) => Misconfiguration {
            variable: ENV_CLIENT_CERT,
            message: format!(
                "{server} requires a client certificate (mTLS) and this client presents none \
                 ({e}); set {ENV_CLIENT_CERT} and {ENV_CLIENT_KEY} to a certificate and key issued \
                 by the server's {ENV_TLS_CLIENT_CA}"
            ),
        },
        RustlsError::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied,
        ) => Misconfiguration {
            variable: ENV_CLIENT_CERT,
            message: format!(
                "{server} refused this client's certificate ({e}); set {ENV_CLIENT_CERT} and \
                 {ENV_CLIENT_KEY} to a certificate issued by the server's {ENV_TLS_CLIENT_CA}"
            ),
        },
        RustlsError::InvalidMessage(_) | RustlsError::InappropriateMessage { .. } => {
            Misconfiguration {
                variable: ENV_SERVER_ADDR,
                message: format!(
                    "{server} does not speak TLS ({e}); use an http:// {ENV_SERVER_ADDR} without \
                 {ENV_SERVER_CA}, or turn TLS on at the server ({ENV_TLS_CERT})"
                ),
            }
        }
        _ => return None,
    };
    Some(found)
}
