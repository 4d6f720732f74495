//! Per-connection request accounting: [`ConnHandle`], found in each
//! request's extensions, and the [`RequestGuard`] that counts one request
//! from its head until its response body ends.
//!
//! Invariant: starting and ending a request costs a few atomic operations and
//! wakes nobody, apart from the first request of a connection (it ends the
//! handshake bound) and, once shutdown waits for the connection to drain, the
//! request that leaves nothing in flight. The connection's watcher
//! ([`super::Guarded`]) reads these counters when its own timer fires, so an
//! HTTP/2 connection's task is not woken by every stream it carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Requests seen on one connection, shared by its [`Guarded`] and the
/// guards of its requests.
///
/// Plain atomics, so that starting and ending a request wakes nobody: the
/// connection's watcher reads them when its own timer fires (it sleeps until
/// the earliest moment the connection could be condemned). The exceptions
/// are the first request (it ends the handshake bound) and, once shutdown
/// waits for the connection to drain, a request that leaves nothing in flight.
#[derive(Debug)]
pub(super) struct Activity {
    /// Requests whose response body has not ended yet.
    in_flight: AtomicUsize,
    /// Requests started since the accept.
    started: AtomicU64,
    /// When the latest request ended, in nanoseconds since `epoch`.
    last_end_ns: AtomicU64,
    epoch: Instant,
    /// Told when the first request starts.
    pub(super) first: Notify,
    /// Set while shutdown waits for `in_flight` to reach zero.
    draining: AtomicBool,
    /// Told when `in_flight` reaches zero while `draining`.
    drained: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_end_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            first: Notify::new(),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }

    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// When the connection last had nothing in flight, or `None` while a
    /// request is in flight.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let ns = self.last_end_ns.load(Ordering::SeqCst);
        Some(self.epoch + Duration::from_nanos(ns))
    }

    /// Completes once nothing is in flight.
    pub(super) async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so an end in between still wakes us.
            drained.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            drained.await;
        }
    }
}

/// One connection's request counter, as found in each request's extensions
/// (tonic inserts it as the `ConnectInfo` of [`Guarded`]; the HTTP loop
/// passes it to [`super::Track`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    activity: Arc<Activity>,
    remote: Option<std::net::SocketAddr>,
}

impl ConnHandle {
    pub(super) fn new(activity: Arc<Activity>, remote: Option<std::net::SocketAddr>) -> Self {
        Self { activity, remote }
    }
}

impl ConnHandle {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(&self) -> RequestGuard {
        let activity = &self.activity;
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        if activity.started.fetch_add(1, Ordering::SeqCst) == 0 {
            activity.first.notify_one();
        }
        RequestGuard(Arc::clone(activity))
    }

    /// The peer's address, when the socket has one.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.remote
    }
}

/// A request in flight on its connection; see [`ConnHandle::begin`].
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        let ended = activity.epoch.elapsed().as_nanos() as u64;
        // Before the decrement, so a watcher that sees nothing in flight sees this end.
        activity.last_end_ns.fetch_max(ended, Ordering::SeqCst);
        if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && activity.draining.load(Ordering::SeqCst)
        {
            activity.drained.notify_waiters();
        }
    }
}
