//! [`Guarded`]: the socket wrapper that enforces the bounds, and the watcher
//! that condemns a connection.

use super::activity::{Activity, ConnHandle};
use super::{CLOSE_LINGER, ConnLimits, Hygiene, Reason, closed_counter};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

type Doom = Pin<Box<dyn Future<Output = Reason> + Send>>;

/// The waker the watcher is polled with. It records that the watcher woke
/// and passes the wake-up on to the connection's task, so the watcher is
/// polled again only when it has something new to say (a timer fired, the
/// shutdown began, the first request came), not on every wake-up of the
/// connection. Polling it costs a lock on the shutdown token and on its
/// `Notify`, both shared by every connection (issue 28: at K = 100 that was
/// lock traffic between the worker threads on every delivery's wake-up).
struct WatcherWake {
    /// Set by a wake-up of the watcher, cleared by the poll that follows.
    /// Starts set: the first poll starts the watcher's timers.
    woke: AtomicBool,
    /// The task serving the connection, as of its last read, write or flush.
    task: atomic_waker::AtomicWaker,
}

impl Wake for WatcherWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// An accepted connection under the bounds of its [`Hygiene`]. Reads and
/// writes pass through until the connection is condemned (handshake or idle
/// bound passed, or shutdown with nothing in flight); from then on they fail
/// with `TimedOut`, so whatever serves it (hyper, the TLS acceptor) drops it.
/// Dropping it counts the close in [`super::CLOSED_TOTAL`].
pub struct Guarded<IO> {
    io: IO,
    handle: ConnHandle,
    doom: Doom,
    /// Shared with `waker`, the one `doom` is polled with.
    wake: Arc<WatcherWake>,
    waker: Waker,
    verdict: Option<Reason>,
    /// The watcher has been polled once (its timers started).
    watched: bool,
    listener: &'static str,
    stop: CancellationToken,
}

impl<IO> Guarded<IO> {
    pub(super) fn new(io: IO, hygiene: &Hygiene) -> Self
    where
        IO: Peer,
    {
        let activity = Arc::new(Activity::new());
        let handle = ConnHandle::new(Arc::clone(&activity), io.peer());
        let wake = Arc::new(WatcherWake {
            woke: AtomicBool::new(true),
            task: atomic_waker::AtomicWaker::new(),
        });
        Self {
            io,
            handle,
            doom: Box::pin(doom(activity, hygiene.limits, hygiene.stop.clone())),
            waker: Waker::from(Arc::clone(&wake)),
            wake,
            verdict: None,
            watched: false,
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

    /// Err once condemned (the verdict already known; nothing is polled).
    fn condemned(&self) -> io::Result<()> {
        match self.verdict {
            None => Ok(()),
            Some(reason) => Err(io::Error::new(io::ErrorKind::TimedOut, reason.label())),
        }
    }

    /// Passes `poll`, the socket's answer, on, after asking the watcher for
    /// its verdict when the socket is not ready (and on the first call, which
    /// starts the watcher's handshake timer). A ready socket skips the
    /// watcher: hyper polls a connection's reads, writes and flushes on every
    /// wake-up and its reads end every wake-up not ready, so the verdict is
    /// still learnt in the wake-up its timer or the shutdown causes, at a
    /// third of the polls (issue 28: the watcher was about 4% of the
    /// server's CPU at K=1000). [`Self::check`] then polls the watcher only
    /// if it woke ([`WatcherWake`]).
    fn after<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_pending() || !self.watched {
            self.watched = true;
            self.check(cx)?;
        }
        poll
    }

    /// Err once condemned. Otherwise the task in `cx` is the one the
    /// watcher wakes, and the watcher is polled only if it woke since its
    /// last poll (or was never polled).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.verdict.is_some() {
            return self.condemned();
        }
        // Register first: a wake-up after the test below reaches this task.
        self.wake.task.register(cx.waker());
        if self.wake.woke.swap(false, Ordering::AcqRel)
            && let Poll::Ready(reason) = self
                .doom
                .as_mut()
                .poll(&mut Context::from_waker(&self.waker))
        {
            tracing::debug!(
                listener = self.listener,
                peer = ?self.handle.remote_addr(),
                reason = reason.label(),
                "closing connection"
            );
            self.verdict = Some(reason);
        }
        self.condemned()
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
        this.condemned()?;
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        this.after(cx, poll)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.condemned()?;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.condemned()?;
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.condemned()?;
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.after(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Resolves with the reason the connection must close; see the module docs.
/// After the first request it wakes only when its timer fires: at the
/// earliest moment the idle bound could have passed, given what it reads then.
async fn doom(activity: Arc<Activity>, limits: ConnLimits, stop: CancellationToken) -> Reason {
    let timer = sleep(limits.handshake_timeout());
    tokio::pin!(timer);
    tokio::select! {
        biased;
        () = stop.cancelled() => {}
        () = activity.first.notified() => {}
        () = &mut timer => {}
    }
    // Whichever woke us, a request that has started is waited for.
    if activity.started() == 0 {
        return if stop.is_cancelled() {
            Reason::Shutdown
        } else {
            Reason::HandshakeTimeout
        };
    }
    while !stop.is_cancelled() {
        let now = Instant::now();
        let deadline = match activity.idle_since() {
            Some(since) if now >= since + limits.idle_timeout() => return Reason::IdleTimeout,
            Some(since) => since + limits.idle_timeout(),
            // A request that ends later moves the bound past `now + idle`.
            None => now + limits.idle_timeout(),
        };
        timer.as_mut().reset(deadline);
        tokio::select! {
            biased;
            () = stop.cancelled() => {}
            () = &mut timer => {}
        }
    }
    linger(&activity, CLOSE_LINGER).await;
    Reason::Shutdown
}

/// Completes once `linger` has passed since the last request ended with no
/// request started since.
async fn linger(activity: &Activity, linger: Duration) {
    loop {
        activity.drain().await;
        let seen = activity.started();
        let since = activity.idle_since().unwrap_or_else(Instant::now);
        sleep_until(since + linger).await;
        if activity.started() == seen && activity.idle_since().is_some() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
