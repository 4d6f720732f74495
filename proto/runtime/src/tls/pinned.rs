//! Server certificate verification: webpki against the trusted CAs, plus one
//! exception, a server that presents exactly a certificate the operator put
//! in the CA file ("pinned").
//!
//! Why: the common one-liner `openssl req -x509 ... -subj /CN=localhost`
//! makes a self-signed certificate with `basicConstraints CA:TRUE`. Given to
//! the server as its certificate and to the client as its CA, webpki refuses
//! it (`CaUsedAsEndEntity`, RFC 5280 forbids a CA as a TLS end entity), while
//! grpcurl (`-cacert`) and grpcio accept it. We accept it too, and only it.
//!
//! Invariants:
//! - Everything webpki accepts is accepted; everything it refuses is refused,
//!   except `CaUsedAsEndEntity` for an end-entity certificate that is
//!   byte-for-byte one of the trusted certificates.
//! - A pinned certificate is still checked for its validity period (webpki
//!   checks time before basic constraints, so an expired one fails as
//!   expired) and for the server name; the handshake signature is verified
//!   with its key like any other.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use std::sync::Arc;

/// webpki verification, plus certificates trusted as themselves.
#[derive(Debug)]
pub(crate) struct PinnedOrWebPki {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl PinnedOrWebPki {
    /// `pinned`: the certificates of the CA file, each also acceptable as the
    /// server's own certificate.
    pub(crate) fn new(
        webpki: Arc<WebPkiServerVerifier>,
        pinned: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self { webpki, pinned }
    }
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if is_ca_used_as_end_entity(&e) && self.is_pinned(end_entity) => {
                rustls::client::verify_server_name(
                    &ParsedCertificate::try_from(end_entity)?,
                    server_name,
                )?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl PinnedOrWebPki {
    fn is_pinned(&self, end_entity: &CertificateDer<'_>) -> bool {
        self.pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
    }
}

/// webpki's refusal of a CA certificate as the server's own.
pub(crate) fn is_ca_used_as_end_entity(e: &Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => matches!(
            inner.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}
