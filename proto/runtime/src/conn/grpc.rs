//! The gRPC port's serve loop: HTTP/2 only (RFC 9113, prior knowledge or
//! TLS with ALPN `h2`), each connection on one task ([`super::inline`]).
//!
//! It does what tonic's `Server::serve_with_incoming_shutdown` did for this
//! port, with hyper's own HTTP/2 server: connection-level keepalive PINGs,
//! the TLS handshake bounded by [`HANDSHAKE_TIMEOUT`] (and by the
//! connection's handshake bound, [`super::Hygiene`]), every request counted
//! on its connection ([`Track`]), and at [`Hygiene::shutdown`] the listener
//! closed, every connection sent GOAWAY and waited for while its streams
//! finish. The caller bounds that wait with its grace period. The service is
//! the whole port (tonic's `Routes` under the port's layers); deadlines
//! (`grpc-timeout`) are the service's to enforce.

use super::inline::{Inline, InlineExecutor};
use super::tasks::Connections;
use super::{Guarded, Hygiene, Track};
use crate::tls::HANDSHAKE_TIMEOUT;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::{Stream, StreamExt};
use tower::{Service, ServiceExt};

/// Pause after a failed accept (EMFILE and the like), so a full fd table
/// is not a busy loop; the connection waits in the kernel's backlog.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// How the port speaks HTTP/2 and TLS.
#[derive(Clone)]
pub struct GrpcSettings {
    /// A PING this often on a connection (hyper's `keep_alive_interval`).
    pub keepalive_interval: Duration,
    /// The connection is closed if a PING is not answered within this.
    pub keepalive_timeout: Duration,
    /// TLS, when on: rustls with ALPN `h2` (see `messenger-server`'s
    /// `app::tls`); `None` serves HTTP/2 with prior knowledge.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `service` on every connection of `incoming` (see
/// [`super::grpc_incoming`]) until [`Hygiene::shutdown`], then waits for the
/// connections to close (each gets GOAWAY and finishes its streams).
pub async fn serve_grpc<S, B, I>(incoming: I, service: S, settings: GrpcSettings, hygiene: Hygiene)
where
    I: Stream<Item = io::Result<Guarded<TcpStream>>>,
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = Connections::default();
    let stopped = hygiene.stopped();
    tokio::pin!(stopped);
    // Boxed, not pinned in place: dropping it below closes the listener, so
    // a client that connects during the drain is refused at once instead of
    // waiting in the backlog until its deadline.
    let mut incoming = Box::pin(incoming);
    loop {
        let io = tokio::select! {
            biased;
            () = &mut stopped => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(io)) => io,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, listener = hygiene.listener, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
                None => break,
            },
            // Ended connections leave the set as they go.
            () = connections.reap() => continue,
        };
        let service = Track::for_connection(service.clone(), io.handle())
            .map_request(|request: http::Request<Incoming>| request.map(tonic::body::Body::new));
        let service = TowerToHyperService::new(service);
        let (settings, stop) = (settings.clone(), hygiene.stopped());
        connections.spawn(async move {
            match &settings.tls {
                None => serve_connection(io, service, &settings, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => serve_connection(tls, service, &settings, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(incoming);
    connections.wait(&hygiene).await;
}

/// One connection, its streams on its own task, until it closes; at `stop`
/// it gets hyper's graceful shutdown (GOAWAY, then its streams finish).
async fn serve_connection<IO, S, B>(
    io: IO,
    service: S,
    settings: &GrpcSettings,
    stop: impl Future<Output = ()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let executor = InlineExecutor::default();
    let mut builder = http2::Builder::new(executor.clone());
    // No limit on concurrent streams, as tonic's `Server` had (hyper's own
    // default is 200): the HTTP client multiplexes every `/events` stream
    // (up to 256) on one connection, and the hub's subscriber limit bounds
    // the total. hyper's other defaults stand, among them its bound on
    // streams reset for local errors (1024).
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout);
    let mut conn = Inline::new(
        builder.serve_connection(TokioIo::new(io), service),
        &executor,
    );
    tokio::pin!(stop);
    let result = tokio::select! {
        result = &mut conn => result,
        () = &mut stop => {
            conn.conn().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "gRPC connection ended with an error");
    }
}
