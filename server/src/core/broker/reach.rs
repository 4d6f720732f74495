//! Whether this replica reaches the broker: the `up` flag behind health and
//! `messenger_broker_up` (one log line per change, not per retry), how a
//! failed publish is reported, and the publishing connection's warm-up.
//!
//! Invariants: reachability turns true only from the reader: after a new
//! reader session has also got a `PING` through the publishing connection,
//! then on each read; it turns false on any failure that says the broker is
//! unreachable. `up` is reachability while the broker refuses nothing
//! ([`super::refusal`]) and no Sentinel failover pauses sends
//! ([`super::sentinel`]). Every use of the publishing connection runs on the
//! publishing thread when it exists.

use super::{BrokerError, Failure, RedisEngine};
use crate::ops::metrics::BrokerOp;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl RedisEngine {
    /// Counts a failed publish and wraps it for the caller. Marking the
    /// broker down is the publishing task's ([`Self::batch_failed`]): a
    /// sender's own timeout says nothing about the broker (it may only have
    /// waited in a long queue).
    pub(super) fn publish_failed(&self, failure: Failure) -> BrokerError {
        self.metrics.error(BrokerOp::Publish);
        BrokerError {
            broker: Arc::clone(&self.name),
            failure,
        }
    }

    /// A publish script call (or its `PING`) failed: a failure that says the
    /// broker is unreachable marks it down. Returns the failure.
    pub(super) fn batch_failed(&self, failure: Failure) -> Failure {
        let failure = self.not_primary(failure);
        if self.note_refusal(&failure) {
            return failure;
        }
        let unreachable = match &failure {
            Failure::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
            Failure::Timeout(_) | Failure::Unreachable(_) => true,
            Failure::NoPrimary(_) | Failure::NotPrimary(_) | Failure::Moved => true,
            _ => false,
        };
        if unreachable {
            self.set_up(false, Some(&failure));
        }
        failure
    }

    /// Gets the publishing connection going again, on the publishing
    /// thread, so health turns SERVING only when a publish would go through.
    pub(super) async fn warm_publisher(&self) -> Result<(), Failure> {
        let warm = self.ping_publisher();
        match self.publishing.get() {
            Some(runtime) => runtime.spawn(warm).await.map_err(|_| Failure::Stopped)??,
            None => warm.await?,
        }
        Ok(())
    }

    /// `PING` on the publishing connection, once more after a failure: the
    /// manager replaces a dead connection (Redis restarted) on the first
    /// failure it sees, so the second goes out on a fresh one.
    pub(super) fn ping_publisher(
        &self,
    ) -> impl Future<Output = redis::RedisResult<()>> + Send + 'static {
        let mut conn = self.publisher();
        async move {
            let ping = || redis::cmd("PING");
            if ping().query_async::<()>(&mut conn).await.is_err() {
                ping().query_async::<()>(&mut conn).await?;
            }
            Ok(())
        }
    }

    /// `false` while the broker is known to be unreachable or refuses writes.
    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Publishes `up` (health, `messenger_broker_up`): reachable, not
    /// refusing writes, and no failover under way (sends paused).
    pub(super) fn refresh_up(&self) {
        let up = self.reachable.load(Ordering::Relaxed)
            && self.refusal().is_none()
            && self.failing_over().is_none();
        self.up
            .send_if_modified(|current| std::mem::replace(current, up) != up);
        self.metrics.up.set(if up { 1.0 } else { 0.0 });
    }

    /// Records reachability, and one log line for the first report and per
    /// change (not per retry).
    pub(super) fn set_up(&self, up: bool, why: Option<&Failure>) {
        let changed = self.reachable.swap(up, Ordering::Relaxed) != up;
        self.refresh_up();
        // The first report logs too: `up` starts false, and a broker that is
        // unreachable from the start (a wrong CA, a wrong port) must say why.
        let first = !self.reported.swap(true, Ordering::Relaxed);
        if !changed && !first {
            return;
        }
        match why {
            _ if up => {
                tracing::info!(broker = %self.name, stream = %self.stream, "broker reachable")
            }
            Some(e) => {
                tracing::warn!(broker = %self.name, error = %e, "broker unreachable; retrying with backoff")
            }
            None => {
                tracing::warn!(broker = %self.name, "broker unreachable; retrying with backoff")
            }
        }
    }
}
