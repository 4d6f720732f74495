//! [`Guarded`]: the socket wrapper that enforces the bounds, and
//! [`ConnHandle`], its link to the requests it carries.

use super::{CLOSE_LINGER, ConnLimits, Hygiene, Reason, closed_counter};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

/// Requests seen on one connection.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    /// Requests whose response body has not ended yet.
    in_flight: usize,
    /// Requests started since the accept.
    started: u64,
}

/// One connection's request counter, as found in each request's extensions
/// (tonic inserts it as the `ConnectInfo` of [`Guarded`]; the HTTP loop
/// passes it to [`super::Track`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    activity: Arc<watch::Sender<Activity>>,
    remote: Option<std::net::SocketAddr>,
}

impl ConnHandle {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(&self) -> RequestGuard {
        self.activity.send_modify(|a| {
            a.in_flight += 1;
            a.started += 1;
        });
        RequestGuard(Arc::clone(&self.activity))
    }

    /// The peer's address, when the socket has one.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.remote
    }
}

/// A request in flight on its connection; see [`ConnHandle::begin`].
#[derive(Debug)]
pub struct RequestGuard(Arc<watch::Sender<Activity>>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.in_flight -= 1);
    }
}

type Doom = Pin<Box<dyn Future<Output = Reason> + Send>>;

/// An accepted connection under the bounds of its [`Hygiene`]. Reads and
/// writes pass through until the connection is condemned (handshake or idle
/// bound passed, or shutdown with nothing in flight); from then on they fail
/// with `TimedOut`, so whatever serves it (hyper, the TLS acceptor) drops it.
/// Dropping it counts the close in [`super::CLOSED_TOTAL`].
pub struct Guarded<IO> {
    io: IO,
    handle: ConnHandle,
    doom: Doom,
    verdict: Option<Reason>,
    listener: &'static str,
    stop: CancellationToken,
}

impl<IO> Guarded<IO> {
    pub(super) fn new(io: IO, hygiene: &Hygiene) -> Self
    where
        IO: Peer,
    {
        let (tx, rx) = watch::channel(Activity::default());
        let handle = ConnHandle {
            activity: Arc::new(tx),
            remote: io.peer(),
        };
        Self {
            io,
            handle,
            doom: Box::pin(doom(rx, hygiene.limits, hygiene.stop.clone())),
            verdict: None,
            listener: hygiene.listener,
            stop: hygiene.stop.clone(),
        }
    }

    pub fn handle(&self) -> ConnHandle {
        self.handle.clone()
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Err once condemned; registers the waker for the verdict otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.verdict.is_none()
            && let Poll::Ready(reason) = self.doom.as_mut().poll(cx)
        {
            tracing::debug!(
                listener = self.listener,
                peer = ?self.handle.remote,
                reason = reason.label(),
                "closing connection"
            );
            self.verdict = Some(reason);
        }
        match self.verdict {
            None => Ok(()),
            Some(reason) => Err(io::Error::new(io::ErrorKind::TimedOut, reason.label())),
        }
    }
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        let reason = match self.verdict {
            Some(reason) => reason,
            None if self.stop.is_cancelled() => Reason::Shutdown,
            None => Reason::Ended,
        };
        closed_counter(self.listener, reason).increment(1);
    }
}

/// A socket that may know its peer's address.
pub trait Peer {
    fn peer(&self) -> Option<std::net::SocketAddr>;
}

impl Peer for tokio::net::TcpStream {
    fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer_addr().ok()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded<tokio::net::TcpStream> {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        self.handle.clone()
    }
}

/// Resolves with the reason the connection must close; see the module docs.
async fn doom(
    mut activity: watch::Receiver<Activity>,
    limits: ConnLimits,
    stop: CancellationToken,
) -> Reason {
    tokio::select! {
        biased;
        () = stop.cancelled() => return Reason::Shutdown,
        _ = activity.wait_for(|a| a.started > 0) => {}
        () = sleep(limits.handshake_timeout()) => return Reason::HandshakeTimeout,
    }
    let idle = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break false,
            _ = activity.wait_for(|a| a.in_flight == 0) => {}
        }
        // A request may start and end between two wake-ups of this task, so
        // activity is "any request started since", not "one in flight now".
        let seen = activity.borrow().started;
        tokio::select! {
            biased;
            () = stop.cancelled() => break false,
            _ = activity.wait_for(|a| a.in_flight > 0 || a.started != seen) => {}
            () = sleep(limits.idle_timeout()) => break true,
        }
    };
    if idle {
        return Reason::IdleTimeout;
    }
    linger(&mut activity, CLOSE_LINGER).await;
    Reason::Shutdown
}

async fn linger(activity: &mut watch::Receiver<Activity>, linger: Duration) {
    loop {
        // The sender lives as long as the connection, so these never fail.
        let _ = activity.wait_for(|a| a.in_flight == 0).await;
        let seen = activity.borrow().started;
        tokio::select! {
            () = sleep(linger) => return,
            _ = activity.wait_for(|a| a.in_flight > 0 || a.started != seen) => {}
        }
    }
}
