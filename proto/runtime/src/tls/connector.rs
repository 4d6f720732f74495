//! The client side of TLS for every gRPC caller: our own rustls
//! `ClientConfig` and connector, handed to tonic with
//! `Endpoint::connect_with_connector`, because tonic 0.14's `ClientTlsConfig`
//! takes no custom certificate verifier (and we need one: [`super::pinned`]).
//!
//! Owns: the rustls config (trust roots, pinned certificates, client identity,
//! ALPN `h2`, ring), TCP connect + TLS handshake within
//! [`super::HANDSHAKE_TIMEOUT`], and the typed [`HandshakeError`] that
//! [`super::diagnose`] turns into one line naming the variable to fix.
//!
//! Invariants:
//! - The channel's URI stays `http://` (tonic refuses `https://` without its
//!   own TLS config); the request `:scheme`/`:authority` are set to the
//!   `https://` origin, so the server sees what tonic's TLS would send.
//! - The server name checked is the address's host unless overridden
//!   ([`ClientTls::domain_name`]); HTTP/2 must be agreed by ALPN, as tonic
//!   requires.

use super::alert::{Prefixed, asking, first_bytes};
use super::pinned::PinnedOrWebPki;
use super::{HANDSHAKE_TIMEOUT, TlsError};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

const ALPN_H2: &[u8] = b"h2";

/// What the client trusts and presents; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// The CA file the trust comes from (`None`: the webpki roots), for messages.
    pub(crate) ca: Option<PathBuf>,
    domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts `ca` (each certificate a trust anchor, and also accepted as the
    /// server's own certificate, see [`super::pinned`]), or the webpki roots
    /// without it; presents `identity` when given.
    pub(crate) fn new(
        ca: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let (ca_path, pinned) = match ca {
            Some((path, certs)) => {
                let (_, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
                if ignored > 0 {
                    return Err(TlsError::Rustls(format!(
                        "{} holds {ignored} certificate(s) that are not valid CA certificates",
                        path.display()
                    )));
                }
                (Some(path), certs)
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                (None, Vec::new())
            }
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki::new(webpki, pinned)));
        let mut config = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self {
            config: Arc::new(config),
            ca: ca_path,
            domain: None,
        })
    }

    /// Trusts the webpki (public) roots, presents no certificate.
    pub fn webpki_roots() -> Result<Self, TlsError> {
        Self::new(None, None)
    }

    /// Checks the server's certificate for `name` instead of the address's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }
}

/// An endpoint plus, with TLS, the connector that speaks it.
#[derive(Debug, Clone)]
pub struct GrpcTarget {
    endpoint: Endpoint,
    tls: Option<TlsConnector>,
}

impl GrpcTarget {
    pub(crate) fn plaintext(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            tls: None,
        }
    }

    /// `https_uri` is connected to over TLS with `tls`.
    pub(crate) fn tls(https_uri: Uri, tls: ClientTls) -> Result<Self, TlsError> {
        let host = https_uri.host().unwrap_or_default();
        let name = tls.domain.clone().unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| TlsError::Rustls(format!("{name:?} is not a valid server name")))?;
        let port = https_uri.port_u16().unwrap_or(443);
        let plain: Uri = format!("http://{}:{port}", host)
            .parse()
            .map_err(|_| TlsError::Rustls(format!("invalid address {https_uri}")))?;
        let endpoint = Endpoint::from(plain).origin(https_uri);
        Ok(Self {
            endpoint,
            tls: Some(TlsConnector {
                config: tls.config,
                server_name,
                ca: tls.ca,
            }),
        })
    }

    /// Adjusts the endpoint (timeouts, keepalive, ...).
    pub fn map(mut self, f: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        self.endpoint = f(self.endpoint);
        self
    }

    /// A channel that connects on first use and reconnects on demand.
    pub fn connect_lazy(&self) -> Channel {
        match &self.tls {
            Some(tls) => self.endpoint.connect_with_connector_lazy(tls.clone()),
            None => self.endpoint.connect_lazy(),
        }
    }

    /// A channel, connected now.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.tls {
            Some(tls) => self.endpoint.connect_with_connector(tls.clone()).await,
            None => self.endpoint.connect().await,
        }
    }
}

/// TCP connect, then the TLS handshake, as a tower service tonic calls per connection.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    ca: Option<PathBuf>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Why a connection could not be made; [`super::diagnose`] tells the
/// permanent ones (a misconfiguration) from the passing ones.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: String,
        server_name: String,
        ca: Option<PathBuf>,
        source: rustls::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} did not finish within {HANDSHAKE_TIMEOUT:?}")]
    Timeout { addr: String },
    #[error("the server at {addr} did not agree on HTTP/2 (ALPN h2) over TLS")]
    NoHttp2 { addr: String },
}

/// One connection: TLS over TCP, with the bytes read while waiting for the
/// server to accept our certificate replayed first ([`super::alert`]).
type TlsConnection = TokioIo<Prefixed<TlsStream<TcpStream>>>;

type Connecting = Pin<Box<dyn Future<Output = Result<TlsConnection, HandshakeError>> + Send>>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TlsConnection;
    type Error = HandshakeError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let addr = format!("{}:{port}", uri.host().unwrap_or_default());
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|source| HandshakeError::Tcp {
                    addr: addr.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let (config, asked) = asking(&this.config);
            let connecting =
                tokio_rustls::TlsConnector::from(config).connect(this.server_name.clone(), tcp);
            let failed = |e: std::io::Error, addr: String| match rustls_error(&e) {
                Some(source) => HandshakeError::Tls {
                    addr,
                    server_name: server_name_text(&this.server_name),
                    ca: this.ca.clone(),
                    source,
                },
                None => HandshakeError::Io { addr, source: e },
            };
            let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
                Err(_) => return Err(HandshakeError::Timeout { addr }),
                Ok(Err(e)) => return Err(failed(e, addr)),
                Ok(Ok(tls)) => tls,
            };
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(HandshakeError::NoHttp2 { addr });
            }
            // A server that asked for our certificate may still refuse it
            // (TLS 1.3): hear its answer before HTTP/2 writes anything.
            let first = if asked.load(std::sync::atomic::Ordering::Relaxed) {
                first_bytes(&mut tls).await.map_err(|e| failed(e, addr))?
            } else {
                Vec::new()
            };
            Ok(TokioIo::new(Prefixed::new(first, tls)))
        })
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
pub(crate) fn rustls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => format!("{name:?}"),
    }
}
