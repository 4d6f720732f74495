//! Accept loops under [`Hygiene`]: [`serve_http`] for the axum routers (the
//! client's API, both `/metrics` ports) and [`grpc_incoming`] for tonic.

use super::tasks::Connections;
use super::{Guarded, Hygiene, RequireHost, Track};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;

/// Pause after a failed accept (EMFILE and the like), so a full fd table
/// is not a busy loop; the connection waits in the kernel's backlog.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Serves `router` on `listener` (HTTP/1.1, and HTTP/2 with prior knowledge)
/// until [`Hygiene::shutdown`], then waits for its connections: idle ones
/// close at once, busy ones once their requests have been answered (each gets
/// a graceful shutdown: `Connection: close`, or GOAWAY). Every request head,
/// not only the first, must arrive within the handshake bound (hyper's
/// `header_read_timeout`). Every HTTP/1 request passes the `Host` check
/// ([`super::host`]) before `router` sees it. The caller bounds the whole
/// wait with its grace.
pub async fn serve_http(listener: TcpListener, router: axum::Router, hygiene: Hygiene) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(hygiene.limits().handshake_timeout());
    builder.http2().timer(TokioTimer::new());
    let mut connections = Connections::default();
    let stopped = hygiene.stopped();
    tokio::pin!(stopped);
    loop {
        let tcp = tokio::select! {
            biased;
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, listener = hygiene.listener, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            // Ended connections leave the set as they go.
            () = connections.reap() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let io = hygiene.guard(tcp);
        let service = Track::for_connection(RequireHost::new(router.clone()), io.handle());
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let stop = hygiene.stopped();
        connections.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                () = stop => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
        });
    }
    drop(listener);
    connections.wait(&hygiene).await;
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// tonic's incoming connections on `listener` under `hygiene`: no Nagle, TCP
/// keepalive every `tcp_keepalive`. TLS, when configured, runs on top of
/// [`Guarded`], so a stalled handshake is bounded as well.
pub fn grpc_incoming(
    listener: TcpListener,
    hygiene: Hygiene,
    tcp_keepalive: Duration,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(tcp_keepalive))
        .map(move |accepted| accepted.map(|tcp| hygiene.guard(tcp)))
}
