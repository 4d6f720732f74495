//! The fan-out core. Knows nothing about gRPC.
//!
//! Owns the subscriber set, the total order and `sendTime` stamping.
//!
//! Invariants:
//! - **One total order.** [`Hub::publish`] stamps and enqueues under one lock,
//!   so every subscriber's queue receives messages in the same order, which is
//!   also ascending `sendTime` (see [`messenger_proto::time::next_send_time`]).
//! - **Handed over before return.** When `publish` returns, the message is in
//!   the queue of every subscriber registered before it took the lock.
//! - **The sender never waits.** Queues are bounded (`try_send`). A subscriber
//!   whose queue is full is removed and its stream ends with
//!   [`Disconnect::Slow`] at its next poll; it is never silently skipped.
//! - **Prompt removal.** Dropping a [`Subscription`] (a cancelled RPC) removes
//!   it from the set at once, with no message needed to notice.
//! - **Bounded membership.** At most `max_subscribers` are registered; past
//!   it [`Hub::subscribe`] fails with [`SubscribeError::Full`] and existing
//!   subscriptions are untouched. The check and the insert share the lock.
//! - **Shutdown drains.** After [`Hub::shutdown`], publishes fail; existing
//!   subscriptions yield what is queued, then [`Disconnect::Shutdown`].

use crate::trace::FanoutTrace;
use messenger_proto::time::{next_send_time, unix_nanos_now};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;

/// A message as accepted: immutable and shared by every subscriber's queue.
pub struct Message {
    pub author: String,
    pub text: String,
    /// Nanoseconds since the Unix epoch, UTC.
    pub send_time: i128,
    /// When the hub accepted it, for delivery latency.
    pub accepted_at: Instant,
    /// The `fanout` span, when this message's send is traced.
    pub trace: Option<Arc<FanoutTrace>>,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Its queue was full when a message arrived.
    Slow,
    /// The hub is shutting down; everything queued was delivered first.
    Shutdown,
}

/// The hub no longer accepts publishes or subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server shutting down")]
pub struct ShuttingDown;

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
}

pub struct Hub {
    queue_capacity: usize,
    max_subscribers: usize,
    inner: Mutex<Inner>,
    /// Subscriber count, updated under the lock on every change, so watchers
    /// (tests, metrics) wait on an event rather than poll.
    count: watch::Sender<usize>,
}

struct Inner {
    last_send_time: i128,
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    shut_down: bool,
}

struct Subscriber {
    tx: mpsc::Sender<Arc<Message>>,
    state: Arc<State>,
}

/// Disconnect reason shared between the hub and a subscription; 0 = none.
#[derive(Default)]
struct State(AtomicU8);

impl State {
    fn set(&self, d: Disconnect) {
        self.0.store(d as u8 + 1, Ordering::Release);
    }
    fn get(&self) -> Option<Disconnect> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Disconnect::Slow),
            2 => Some(Disconnect::Shutdown),
            _ => None,
        }
    }
}

impl Hub {
    /// A hub whose subscribers each queue at most `queue_capacity` messages,
    /// with no limit on their number.
    pub fn new(queue_capacity: usize) -> Arc<Self> {
        Self::with_max_subscribers(queue_capacity, usize::MAX)
    }

    /// A hub that also refuses subscribers past `max_subscribers`.
    pub fn with_max_subscribers(queue_capacity: usize, max_subscribers: usize) -> Arc<Self> {
        assert!(queue_capacity > 0, "queue capacity must be positive");
        Arc::new(Self {
            queue_capacity,
            max_subscribers,
            inner: Mutex::new(Inner {
                last_send_time: 0,
                next_id: 1,
                subscribers: HashMap::new(),
                shut_down: false,
            }),
            count: watch::Sender::new(0),
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

    /// Registers a subscriber. It receives every message published after this
    /// returns, and none from before.
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, SubscribeError> {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let state = Arc::new(State::default());
        let mut inner = self.inner.lock();
        if inner.shut_down {
            return Err(ShuttingDown.into());
        }
        if inner.subscribers.len() >= self.max_subscribers {
            return Err(SubscribeError::Full {
                max: self.max_subscribers,
            });
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let sub = Subscriber {
            tx,
            state: Arc::clone(&state),
        };
        inner.subscribers.insert(id, sub);
        let count = inner.subscribers.len();
        self.count.send_replace(count);
        drop(inner);
        tracing::info!(subscriber = id, subscribers = count, "subscriber joined");
        Ok(Subscription {
            id,
            rx,
            state,
            hub: Arc::clone(self),
        })
    }

    /// Stamps the message and hands it to every subscriber's queue.
    pub fn publish(
        &self,
        author: String,
        text: String,
        trace: Option<Arc<FanoutTrace>>,
    ) -> Result<Published, ShuttingDown> {
        let mut inner = self.inner.lock();
        if inner.shut_down {
            return Err(ShuttingDown);
        }
        let send_time = next_send_time(inner.last_send_time, unix_nanos_now());
        inner.last_send_time = send_time;
        let message = Arc::new(Message {
            author,
            text,
            send_time,
            accepted_at: Instant::now(),
            trace,
        });
        let mut slow = Vec::new();
        let before = inner.subscribers.len();
        inner
            .subscribers
            .retain(|&id, sub| match sub.tx.try_send(Arc::clone(&message)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    sub.state.set(Disconnect::Slow);
                    slow.push(id);
                    false
                }
                // The subscription is being dropped; its Drop finds nothing to remove.
                Err(TrySendError::Closed(_)) => false,
            });
        let delivered_to = inner.subscribers.len();
        if delivered_to != before {
            self.count.send_replace(delivered_to);
        }
        drop(inner);
        for id in &slow {
            tracing::warn!(
                subscriber = id,
                queue_capacity = self.queue_capacity,
                "subscriber fell behind; disconnecting it with RESOURCE_EXHAUSTED"
            );
        }
        Ok(Published {
            message,
            delivered_to,
            dropped_slow: slow.len(),
        })
    }

    /// Refuses further publishes and subscriptions and ends every subscription
    /// once its queue is drained. Idempotent.
    pub fn shutdown(&self) {
        let mut inner = self.inner.lock();
        inner.shut_down = true;
        let subscribers = std::mem::take(&mut inner.subscribers);
        self.count.send_replace(0);
        drop(inner);
        for sub in subscribers.values() {
            sub.state.set(Disconnect::Shutdown);
        }
        tracing::info!(
            subscribers = subscribers.len(),
            "hub shut down; ending streams"
        );
    }

    fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        let removed = inner.subscribers.remove(&id).is_some();
        let count = inner.subscribers.len();
        if removed {
            self.count.send_replace(count);
        }
        drop(inner);
        if removed {
            tracing::info!(subscriber = id, subscribers = count, "subscriber left");
        }
        removed
    }
}

/// One registered subscriber's end of the hub. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Arc<Message>>,
    state: Arc<State>,
    hub: Arc<Hub>,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next message in total order, or why the subscription ended. A slow
    /// subscriber learns it at once, without draining its stale queue.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<Message>, Disconnect>> {
        if self.state.get() == Some(Disconnect::Slow) {
            return Poll::Ready(Err(Disconnect::Slow));
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(message) => Poll::Ready(Ok(message)),
            None => Poll::Ready(Err(self.state.get().unwrap_or(Disconnect::Shutdown))),
        }
    }

    pub async fn recv(&mut self) -> Result<Arc<Message>, Disconnect> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

#[cfg(test)]
mod tests;
