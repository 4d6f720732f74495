//! The fan-out core. Knows nothing about gRPC.
//!
//! Owns the subscriber set and hands each message from the [`Engine`] (which
//! owns offsets, `sendTime` and history) to every subscriber's queue.
//!
//! Invariants:
//! - **One total order.** [`Hub::publish`] appends to the engine and enqueues
//!   under one lock, so every subscriber's queue receives messages in the same
//!   order, which is ascending offset and ascending `sendTime` (see
//!   [`messenger_proto::time::next_send_time`]).
//! - **Handed over before return.** When `publish` returns, the message is in
//!   history and in the queue of every subscriber registered before it took
//!   the lock.
//! - **Resume has no seam.** [`Hub::subscribe_with`] with a position copies
//!   the history after it and registers the live queue under that same lock,
//!   so the replay ends exactly where the live queue begins: no gap, no
//!   duplicate. A position history cannot serve (another epoch, evicted, ahead)
//!   is a [`Gap`]; the subscription then starts live, as a plain one does.
//! - **The sender never waits.** Live queues are bounded (`try_send`). A
//!   subscriber whose live queue is full is removed and its stream ends with
//!   [`Disconnect::Slow`] at its next poll; it is never silently skipped.
//!   Its queue is dropped at once, not when its stream is: a peer that gives
//!   the stream no window keeps it open, unpolled, as long as it likes.
//! - **Replay is outside the allowance.** A replay is a snapshot delivered
//!   before the live queue and does not count against `queue_capacity`; live
//!   messages arriving while it is read do. A resuming subscriber that cannot
//!   read its replay before `queue_capacity` new messages arrive is cut off as
//!   slow and resumes again from the offset it reached.
//! - **No subscriber is always last.** Each fan-out begins one subscriber
//!   further along than the previous one ([`roster::Roster::fan_out`]), so
//!   over K messages every subscriber is visited first once and last once.
//! - **Prompt removal.** Dropping a [`Subscription`] (a cancelled RPC) removes
//!   it from the set at once, with no message needed to notice.
//! - **Bounded membership.** At most `max_subscribers` subscriptions are
//!   open: registered ones, and those cut off as slow whose [`Subscription`]
//!   is not dropped yet (an open stream the peer never reads). Past it
//!   [`Hub::subscribe`] fails with [`SubscribeError::Full`] and existing
//!   subscriptions are untouched. The check and the insert share the lock.
//! - **Broker order.** With a broker engine, [`Hub::ingest`] holds and
//!   enqueues the broker's messages in the order its one reader hands them
//!   over; [`Hub::restart`] ends every subscription with
//!   [`Disconnect::HistoryLost`] (after its queue) when that order cannot
//!   continue, so no subscriber ever sees a silent gap.
//! - **Shutdown drains.** After [`Hub::shutdown`], publishes fail; existing
//!   subscriptions yield their replay and what is queued, then
//!   [`Disconnect::Shutdown`]. The engine is closed first (the in-process
//!   engine writes its exact `sendTime` mark).

mod fanout;
mod queue;
mod roster;
mod subscription;

pub use crate::core::history::state::StateError;
pub use crate::core::history::{Gap, HistoryStats, Message};
pub use queue::BATCH_MAX;
use roster::Roster;
use subscription::Slot;
pub use subscription::{
    Delivery, Disconnect, Resume, SubscriberDump, SubscriberInfo, Subscription,
};

use crate::core::history::Engine;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The hub no longer accepts publishes or subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server shutting down")]
pub struct ShuttingDown;

/// Why [`Hub::publish`] refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// The stamp could not be made durable (`MESSENGER_STATE_DIR`).
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why [`Hub::subscribe`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    #[error("subscriber limit of {max} reached")]
    Full { max: usize },
}

/// The outcome of one publish.
pub struct Published {
    pub message: Arc<Message>,
    /// Subscribers whose queue received the message.
    pub delivered_to: usize,
    /// Subscribers disconnected by this publish because their queue was full.
    pub dropped_slow: usize,
    /// History after this publish.
    pub history: HistoryStats,
}

/// What a new subscriber asks for and who it is (for the debug dump).
#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    /// `(epoch, offset)`: replay every message after `offset`, then live.
    pub since: Option<(String, u64)>,
    pub peer: Option<SocketAddr>,
    pub wants_trace: bool,
}

/// Telemetry riding with one live message to every subscriber's queue. The
/// hub never looks inside: it hands it over with the message and drops it
/// with the last queue's copy (a `fanout` span ends then).
pub trait MessageTrace: Send + Sync {
    /// W3C traceparent kept with the message in history, so a replay still
    /// continues the sender's trace.
    fn traceparent(&self) -> Option<String>;

    /// Records one delivery to `subscriber`, `latency` after acceptance;
    /// with `want_traceparent`, returns the traceparent it continues from.
    fn deliver(&self, subscriber: u64, latency: Duration, want_traceparent: bool)
    -> Option<String>;

    /// `false` when a delivery records nothing and only hands on
    /// [`MessageTrace::traceparent`]: the hub then queues it only for the
    /// subscribers that asked for a trace context, so the rest pay no
    /// shared count per delivery.
    fn records(&self) -> bool {
        true
    }
}

/// One entry of a live queue: the shared message and, when its send is
/// traced, the [`MessageTrace`] that stays alive until every queue released it.
pub(crate) struct Queued {
    message: Arc<Message>,
    trace: Option<Arc<dyn MessageTrace>>,
}

pub struct Hub {
    queue_capacity: usize,
    max_subscribers: usize,
    inner: Mutex<Inner>,
    /// Subscriber count, updated under the lock on every change, so watchers
    /// (tests, metrics) wait on an event rather than poll.
    count: watch::Sender<usize>,
    /// Streams still open: the subscribers plus those cut off as slow whose
    /// stream has not ended (the `messenger_subscribers` gauge). Updated
    /// with `count`.
    open: watch::Sender<usize>,
}

struct Inner {
    engine: Box<dyn Engine>,
    next_id: u64,
    subscribers: Roster,
    /// Subscriptions cut off as slow and not yet dropped: out of
    /// `subscribers`, still counted against `max_subscribers`.
    cut_open: usize,
    shut_down: bool,
}

impl Hub {
    /// A hub over `engine` whose subscribers each queue at most
    /// `queue_capacity` messages, refusing subscribers past `max_subscribers`.
    pub fn with_engine(
        queue_capacity: usize,
        max_subscribers: usize,
        engine: Box<dyn Engine>,
    ) -> Arc<Self> {
        assert!(queue_capacity > 0, "queue capacity must be positive");
        Arc::new(Self {
            queue_capacity,
            max_subscribers,
            inner: Mutex::new(Inner {
                engine,
                next_id: 1,
                subscribers: Roster::default(),
                cut_open: 0,
                shut_down: false,
            }),
            count: watch::Sender::new(0),
            open: watch::Sender::new(0),
        })
    }

    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Current number of registered subscribers.
    pub fn subscribers(&self) -> usize {
        self.inner.lock().subscribers.len()
    }

    /// Watches the number of registered subscribers.
    pub fn watch_subscribers(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Watches the number of streams still open: the subscribers plus those
    /// cut off as slow whose peer has not closed them yet (each still holds
    /// a place under `max_subscribers`).
    pub fn watch_open_streams(&self) -> watch::Receiver<usize> {
        self.open.subscribe()
    }

    /// Wakes every waiting subscriber's stream once, with no message, so that
    /// each re-checks what its stream checks on every poll (its caller's
    /// token, after the tokens file was reloaded).
    pub fn wake_all(&self) {
        let wakers: Vec<_> = (self.inner.lock().subscribers.slots())
            .filter_map(|slot| slot.take_waker())
            .collect();
        // Outside the lock, as for a publish.
        for waker in wakers {
            waker.wake();
        }
    }

    /// Publishes both counts; called under the lock after every change.
    fn counted(&self, inner: &Inner) {
        let registered = inner.subscribers.len();
        self.count
            .send_if_modified(|c| std::mem::replace(c, registered) != registered);
        let open = registered + inner.cut_open;
        self.open
            .send_if_modified(|c| std::mem::replace(c, open) != open);
    }

    /// The engine's epoch.
    pub fn epoch(&self) -> String {
        self.inner.lock().engine.epoch().to_owned()
    }

    /// History's current size.
    pub fn history(&self) -> HistoryStats {
        self.inner.lock().engine.stats()
    }

    /// The hub has been shut down.
    pub fn is_shut_down(&self) -> bool {
        self.inner.lock().shut_down
    }

    /// Registers a plain subscriber: it receives every message published
    /// after this returns, and none from before.
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, SubscribeError> {
        self.subscribe_with(SubscribeRequest::default())
    }

    /// Registers a subscriber; with `since`, it first receives history after
    /// that position (see [`Subscription::resume`]), then live messages.
    pub fn subscribe_with(
        self: &Arc<Self>,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let mut inner = self.inner.lock();
        if inner.shut_down {
            return Err(ShuttingDown.into());
        }
        if inner.subscribers.len() + inner.cut_open >= self.max_subscribers {
            return Err(SubscribeError::Full {
                max: self.max_subscribers,
            });
        }
        let (replay, resume) = match &request.since {
            None => (Vec::new(), Resume::NotAsked),
            Some((epoch, offset)) => match inner.engine.read_after(epoch, *offset) {
                Ok(replay) => {
                    let replayed = replay.len();
                    (replay, Resume::Recovered { replayed })
                }
                Err(gap) => (Vec::new(), Resume::Gap(gap)),
            },
        };
        let epoch = inner.engine.epoch().to_owned();
        let head = inner.engine.stats().newest;
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot::new(SubscriberInfo::new(id, &request, replay.len())));
        inner.subscribers.insert(id, Arc::clone(&slot));
        let count = inner.subscribers.len();
        self.counted(&inner);
        drop(inner);
        tracing::info!(subscriber = id, subscribers = count, resume = ?resume, "subscriber joined");
        Ok(Subscription {
            id,
            slot,
            batch: VecDeque::new(),
            taken: 0,
            replay: replay.into(),
            hub: Arc::clone(self),
            epoch,
            resume,
            head,
        })
    }

    /// Every open subscription's state, by id, for the operator's debug dump.
    pub fn dump(&self) -> Vec<SubscriberDump> {
        let inner = self.inner.lock();
        let mut out: Vec<SubscriberDump> = inner
            .subscribers
            .slots()
            .map(|s| s.info.dump(s.queued(), self.queue_capacity))
            .collect();
        drop(inner);
        out.sort_by_key(|d| d.id);
        out
    }

    /// Refuses further publishes and subscriptions and ends every subscription
    /// once its queue is drained. Idempotent.
    pub fn shutdown(&self) {
        let mut inner = self.inner.lock();
        inner.shut_down = true;
        inner.engine.close();
        let subscribers = inner.subscribers.take();
        self.counted(&inner);
        drop(inner);
        for slot in &subscribers {
            slot.end(Disconnect::Shutdown);
        }
        tracing::info!(
            subscribers = subscribers.len(),
            "hub shut down; ending streams"
        );
    }

    /// Subscriptions cut off as slow whose stream is still open.
    pub fn cut_open(&self) -> usize {
        self.inner.lock().cut_open
    }

    /// Called when subscription `id` (sharing `slot`) is dropped.
    fn remove(&self, id: u64, slot: &Slot) -> bool {
        let mut inner = self.inner.lock();
        let removed = inner.subscribers.remove(id).is_some();
        // Cut off as slow (under this lock, by `enqueue`): counted until now.
        if !removed && slot.is_slow() {
            inner.cut_open -= 1;
        }
        let count = inner.subscribers.len();
        self.counted(&inner);
        drop(inner);
        if removed {
            tracing::info!(subscriber = id, subscribers = count, "subscriber left");
        }
        removed
    }
}

#[cfg(test)]
mod tests;
