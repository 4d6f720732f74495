//! The gRPC port's TLS: a rustls server config from checked files.
//!
//! What tonic's `ServerTlsConfig` built for this port, with the same
//! choices: the ring provider, its default protocol versions (TLS 1.2 and
//! 1.3), ALPN `h2` only (gRPC is HTTP/2, RFC 9113 §3.2), and with a client
//! CA every client must present a certificate that chains to it (mTLS).

use super::{IdentityFiles, TlsError};
use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// ALPN protocol id of HTTP/2 over TLS.
const ALPN_H2: &[u8] = b"h2";

/// The acceptor for `identity`; with `client_ca`, clients must present a
/// certificate that chains to one of its certificates.
///
/// Errors: [`TlsError::Rustls`] when rustls refuses the key, the CA
/// certificates or the resulting config.
pub fn server_acceptor(
    identity: IdentityFiles,
    client_ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let rejected = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(certs) => {
            // As tonic did: a certificate webpki cannot parse is skipped.
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
