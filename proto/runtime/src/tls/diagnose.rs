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
            return of_rustls(&source, &SERVER, "the server", "", Trust::Either);
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
            &SERVER,
            &format!("the server at {addr}"),
            server_name,
            ca.as_deref().into(),
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

/// Who is on the other end and which settings make the TLS between us,
/// for the messages: the messenger server (its client variables) or a
/// Redis broker (`MESSENGER_BROKER_*`).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// "the server", "the broker": the subject of the messages.
    pub what: &'static str,
    /// The variable of the CA file we trust it with.
    pub ca_var: &'static str,
    /// The variable of its address.
    pub addr_var: &'static str,
    /// The setting of its own certificate (`MESSENGER_TLS_CERT`, Redis's
    /// `tls-cert-file`), said as "<what>'s <setting>".
    pub cert_setting: &'static str,
    /// The variable most apt for a certificate problem of its own.
    pub cert_var: &'static str,
    /// Our client certificate and key variables.
    pub client_cert_var: &'static str,
    pub client_key_var: &'static str,
    /// Its setting of the CA that issues client certificates.
    pub client_ca_setting: &'static str,
    /// Whether a certificate in our CA file is accepted as its own ([`super::pinned`]).
    pub pins: bool,
}

/// The messenger server, as every gRPC caller of ours reaches it.
pub const SERVER: Peer = Peer {
    what: "the server",
    ca_var: ENV_SERVER_CA,
    addr_var: ENV_SERVER_ADDR,
    cert_setting: ENV_TLS_CERT,
    cert_var: ENV_TLS_CERT,
    client_cert_var: ENV_CLIENT_CERT,
    client_key_var: ENV_CLIENT_KEY,
    client_ca_setting: ENV_TLS_CLIENT_CA,
    pins: true,
};

/// What the peer's certificate was checked against, as the messages say it.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The CA file of [`Peer::ca_var`].
    File(&'a Path),
    /// The public (webpki) roots: the CA variable is not set.
    PublicRoots,
    /// The CA variable's file, or the public roots when it is not set.
    Either,
}

impl<'a> From<Option<&'a Path>> for Trust<'a> {
    fn from(ca: Option<&'a Path>) -> Self {
        ca.map_or(Self::PublicRoots, Self::File)
    }
}

/// The misconfiguration behind a failed TLS connection to `peer` at `addr`,
/// checked for `name` against `ca`, or `None` when `error` holds no rustls
/// error that a setting explains.
pub fn of_peer(
    error: &(dyn Error + 'static),
    peer: &Peer,
    addr: &str,
    name: &str,
    ca: Trust<'_>,
) -> Option<Misconfiguration> {
    let mut next = Some(error);
    while let Some(e) = next {
        // Some clients (redis-rs) keep the I/O error as an `Arc<dyn Error>`,
        // which forwards `source` but not the error itself.
        let shared = e.downcast_ref::<std::sync::Arc<dyn Error + Send + Sync>>();
        let e_or_inner: &(dyn Error + 'static) = match shared {
            Some(inner) => &**inner,
            None => e,
        };
        let found = (e_or_inner.downcast_ref::<RustlsError>().cloned())
            .or_else(|| (e_or_inner.downcast_ref::<std::io::Error>()).and_then(rustls_error));
        if let Some(tls) = found {
            let server = match addr {
                "" => peer.what.to_owned(),
                addr => format!("{} at {addr}", peer.what),
            };
            return of_rustls(&tls, peer, &server, name, ca);
        }
        next = e.source();
    }
    None
}

/// `DNS:name` or `IP:name`, as `subjectAltName` takes it (`DNS:<host>`
/// when the name is not known).
fn san(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(_) => format!("IP:{name}"),
        Err(_) if name.is_empty() => "DNS:<host>".to_owned(),
        Err(_) => format!("DNS:{name}"),
    }
}

fn of_rustls(
    e: &RustlsError,
    peer: &Peer,
    server: &str,
    name: &str,
    ca: Trust<'_>,
) -> Option<Misconfiguration> {
    let ca_var = peer.ca_var;
    let trusted = match ca {
        Trust::File(path) => format!("{ca_var} ({})", path.display()),
        Trust::PublicRoots => format!("the public roots ({ca_var} is not set)"),
        Trust::Either => format!("{ca_var} (or the public roots when it is not set)"),
    };
    let server_ca = |what: &str| Misconfiguration {
        variable: ca_var,
        message: format!("{server} presented a certificate {what}"),
    };
    let server_cert = |what: &str| Misconfiguration {
        variable: peer.cert_var,
        message: format!("{server} presented a certificate {what}"),
    };
    let cert_setting = format!("{}'s {}", peer.what, peer.cert_setting);
    let client_ca_setting = format!("{}'s {}", peer.what, peer.client_ca_setting);
    let san = san(name);
    let cn = if name.is_empty() { "<host>" } else { name };
    let found = match e {
        RustlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                server_ca(&format!(
                    "not issued by a CA in {trusted}; set {ca_var} to the CA file that issued it \
                 (or to {}'s own certificate if it is self-signed)",
                    peer.what
                ))
            }
            CertificateError::NotValidForNameContext { presented, .. } if presented.is_empty() => {
                server_cert(&format!(
                    "without a subjectAltName, so not valid for {name:?} (rustls, like browsers and \
                     grpc-go, ignores the CN); reissue {cert_setting} with -addext \
                     \"subjectAltName={san}\""
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
                    variable: peer.addr_var,
                    message: format!(
                        "{server} presented a certificate not valid for {name:?}{holds}; use a host it \
                         holds in {}, or reissue {cert_setting} with -addext \"subjectAltName={san}\"",
                        peer.addr_var
                    ),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                server_cert(&format!("that has expired; renew {cert_setting}"))
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                server_cert(&format!(
                    "that is not valid yet; check both clocks, or {cert_setting}'s dates"
                ))
            }
            _ if super::pinned::is_ca_used_as_end_entity(e) && peer.pins => server_ca(&format!(
                "that is a CA certificate (basicConstraints CA:TRUE) not in {trusted}; put that very \
                 certificate in {ca_var} to pin it, or give the server a leaf certificate"
            )),
            _ if super::pinned::is_ca_used_as_end_entity(e) => server_ca(&format!(
                "that is a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes \
                 by default), which rustls refuses as {}'s own even when it is in {ca_var}; \
                 reissue it as a leaf: openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
                 -subj /CN={cn} -addext \"subjectAltName={san}\" -addext \
                 \"basicConstraints=critical,CA:FALSE\" -keyout key.pem -out cert.pem, then give \
                 cert.pem and key.pem to {cert_setting} and cert.pem to {ca_var}",
                peer.what
            )),
            other => server_ca(&format!(
                "that was refused ({other:?}); check it against {trusted}"
            )),
        },
        RustlsError::AlertReceived(AlertDescription::CertificateRequired) => Misconfiguration {
            variable: peer.client_cert_var,
            message: format!(
                "{server} requires a client certificate (mTLS) and this client presents none \
                 ({e}); set {} and {} to a certificate and key issued by {}",
                peer.client_cert_var, peer.client_key_var, client_ca_setting
            ),
        },
        RustlsError::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            // A signature that does not verify: a CA of the same name but
            // another key (certificates regenerated on one side only).
            | AlertDescription::DecryptError
            // The wrong key usage (e.g. a serverAuth-only certificate).
            | AlertDescription::UnsupportedCertificate,
        ) => Misconfiguration {
            variable: peer.client_cert_var,
            message: format!(
                "{server} refused this client's certificate ({e}); set {} and {} to a \
                 certificate issued by {}",
                peer.client_cert_var, peer.client_key_var, client_ca_setting
            ),
        },
        RustlsError::InvalidMessage(_) | RustlsError::InappropriateMessage { .. } => {
            Misconfiguration {
                variable: peer.addr_var,
                message: format!(
                    "{server} does not speak TLS ({e}); use a plaintext {} without {ca_var}, or \
                     turn TLS on at {}",
                    peer.addr_var, peer.what
                ),
            }
        }
        _ => return None,
    };
    Some(found)
}
