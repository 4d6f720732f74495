//! One subscriber's end of the hub: its replay, its live queue, and the
//! counters the operator's debug dump shows.
//!
//! What the hub and a subscription share is one [`Slot`]: the live
//! [`Queue`], why the subscription ended, and the counters. It is one
//! allocation of about 200 bytes per subscriber, and the queue allocates
//! its buffer only when a message arrives.
//!
//! A subscriber cut off as slow keeps nothing but this slot, the
//! subscription's own state and the batch its stream had already taken (at
//! most [`BATCH_MAX`] messages, none for a stream that never got a window):
//! its queue is dropped when it is cut ([`Slot::cut_slow`]).
//!
//! The live queue is drained in batches: one wake-up takes up to
//! [`BATCH_MAX`](super::BATCH_MAX) queued messages at once (one release of queue room to the
//! publisher, not one per message). A message in the batch no longer counts
//! against the queue's allowance (the stream is writing it in this
//! wake-up), but the debug dump still counts it as queued until the stream
//! takes it. The dump's counters are this subscriber's own (plain stores, no
//! read-modify-write, no line shared with other subscribers).

use super::queue::{BATCH_MAX, PushError, Queue};
use super::{Gap, Hub, Message, MessageTrace, Queued, SubscribeRequest};
use messenger_proto::time::unix_nanos_now;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Its queue was full when a message arrived.
    Slow,
    /// The hub is shutting down; everything queued was delivered first.
    Shutdown,
    /// The broker's history was lost or skipped past this replica (see
    /// [`Hub::restart`]); everything queued was delivered first.
    HistoryLost,
}

/// Disconnect reason shared between the hub and a subscription; 0 = none.
#[derive(Default)]
pub(super) struct State(AtomicU8);

impl State {
    pub(super) fn set(&self, d: Disconnect) {
        self.0.store(d as u8 + 1, Ordering::Release);
    }
    pub(super) fn get(&self) -> Option<Disconnect> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Disconnect::Slow),
            2 => Some(Disconnect::Shutdown),
            3 => Some(Disconnect::HistoryLost),
            _ => None,
        }
    }
}

/// What came of a subscriber's request to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// A plain subscription: no position was given.
    NotAsked,
    /// History continues from the position; `replayed` messages come first.
    Recovered { replayed: usize },
    /// History cannot continue from the position; the stream starts live.
    Gap(Gap),
}

/// One message handed to a subscriber.
pub struct Delivery {
    pub message: Arc<Message>,
    /// The live message's trace (its `fanout` span) when the send was
    /// traced; `None` for replays, whose original context is
    /// [`Message::traceparent`], and for a trace that records nothing
    /// ([`MessageTrace::records`]) when this subscriber did not ask for it.
    pub trace: Option<Arc<dyn MessageTrace>>,
    /// It came from history, not the live queue.
    pub replayed: bool,
}

/// A subscriber's identity and counters, shared by the hub (for the dump)
/// and its subscription (which updates them as it delivers).
#[derive(Debug)]
pub struct SubscriberInfo {
    id: u64,
    peer: Option<SocketAddr>,
    /// Unix nanoseconds, UTC.
    connected_since: i128,
    resumed: bool,
    wants_trace: bool,
    delivered: AtomicU64,
    last_offset: AtomicU64,
    /// Live messages taken from the queue into the current batch and not
    /// yet taken by the stream.
    batched: AtomicUsize,
    replay_pending: AtomicUsize,
}

/// One line of the debug dump (`GET /debug/subscribers`, SIGUSR2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberDump {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    /// Unix nanoseconds, UTC.
    pub connected_since: i128,
    /// Live messages queued and not yet taken by the stream.
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Replayed messages not yet taken by the stream.
    pub replay_pending: usize,
    /// Messages taken by the stream (replayed and live).
    pub delivered: u64,
    /// Offset of the last message taken (0: none yet).
    pub last_offset: u64,
    /// It subscribed with a position (`messenger-since`).
    pub resumed: bool,
    pub wants_trace: bool,
}

impl SubscriberInfo {
    pub(super) fn new(id: u64, request: &SubscribeRequest, replay: usize) -> Self {
        Self {
            id,
            peer: request.peer,
            connected_since: unix_nanos_now(),
            resumed: request.since.is_some(),
            wants_trace: request.wants_trace,
            delivered: AtomicU64::new(0),
            last_offset: AtomicU64::new(0),
            batched: AtomicUsize::new(0),
            replay_pending: AtomicUsize::new(replay),
        }
    }

    /// It asked for each message's trace context.
    pub(super) fn wants_trace(&self) -> bool {
        self.wants_trace
    }

    pub(super) fn dump(&self, queue_depth: usize, queue_capacity: usize) -> SubscriberDump {
        SubscriberDump {
            id: self.id,
            peer: self.peer,
            connected_since: self.connected_since,
            queue_depth: queue_depth + self.batched.load(Relaxed),
            queue_capacity,
            replay_pending: self.replay_pending.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            last_offset: self.last_offset.load(Relaxed),
            resumed: self.resumed,
            wants_trace: self.wants_trace,
        }
    }
}

/// What the hub and one subscription share (see the module docs).
pub(super) struct Slot {
    queue: Mutex<Queue<Queued>>,
    state: State,
    pub(super) info: SubscriberInfo,
}

impl Slot {
    pub(super) fn new(info: SubscriberInfo) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            state: State::default(),
            info,
        }
    }

    /// Queues `queued` unless `capacity` messages are queued or the
    /// subscription has ended. Returns its stream's waker if the stream was
    /// waiting: the hub wakes it once its own lock is released.
    pub(super) fn push(&self, queued: Queued, capacity: usize) -> Result<Option<Waker>, PushError> {
        self.queue.lock().push(queued, capacity)
    }

    /// Ends the subscription for `why`: nothing more is queued, and its
    /// stream (woken) takes what is queued, then learns `why`.
    pub(super) fn end(&self, why: Disconnect) {
        self.state.set(why);
        let waker = self.queue.lock().close();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the subscription as [`Disconnect::Slow`] and hands back its
    /// queue, for the caller to drop once its lock is released: the stream
    /// learns it at once and never reads the queue, and hyper may never poll
    /// it again (a peer that gives the stream no window), so nothing stale
    /// may wait for the stream to be dropped.
    pub(super) fn cut_slow(&self) -> VecDeque<Queued> {
        self.state.set(Disconnect::Slow);
        let mut queue = self.queue.lock();
        let waker = queue.close();
        let stale = queue.take_all();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        stale
    }

    /// The waiting stream's waker, taken (see [`Queue::take_waker`]).
    pub(super) fn take_waker(&self) -> Option<std::task::Waker> {
        self.queue.lock().take_waker()
    }

    /// It was cut off as slow.
    pub(super) fn is_slow(&self) -> bool {
        self.state.get() == Some(Disconnect::Slow)
    }

    /// Live messages queued and not yet taken into a batch.
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().len()
    }
}

/// One registered subscriber's end of the hub. Dropping it unsubscribes.
pub struct Subscription {
    pub(super) id: u64,
    pub(super) slot: Arc<Slot>,
    /// Live messages taken from the queue in this wake-up, oldest first; no
    /// allocation until the first batch.
    pub(super) batch: VecDeque<Queued>,
    /// Messages taken by the stream (mirrored in `slot.info`).
    pub(super) taken: u64,
    /// History after the requested position, delivered before the queue.
    pub(super) replay: VecDeque<Arc<Message>>,
    pub(super) hub: Arc<Hub>,
    pub(super) epoch: String,
    pub(super) resume: Resume,
    /// Newest offset at registration: replay ends here, live starts after.
    pub(super) head: u64,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Why the hub ended this subscription, if it did (the stream may not
    /// have taken the end yet: a peer that never reads is never polled).
    pub fn ended_by(&self) -> Option<Disconnect> {
        self.slot.state.get()
    }

    /// The epoch the offsets of this subscription's messages belong to.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn resume(&self) -> Resume {
        self.resume
    }

    /// Offset of the newest message accepted before registration (0: none).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// `true` when the next [`Subscription::poll_recv`] would start a new
    /// batch from the queue with fewer than a full batch ([`BATCH_MAX`])
    /// waiting, so that messages published meanwhile would still join it;
    /// `false` while a batch or the replay is in hand, with nothing queued,
    /// or with a full batch queued. For a writer that coalesces.
    pub fn next_batch_could_grow(&self) -> bool {
        if !self.batch.is_empty() || !self.replay.is_empty() {
            return false;
        }
        let queued = self.slot.queue.lock().len();
        (1..BATCH_MAX).contains(&queued)
    }

    /// The next message in total order (replay first, then live), or why
    /// the subscription ended. A slow subscriber learns it at once, without
    /// draining its stale queue.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery, Disconnect>> {
        let state = &self.slot.state;
        if state.get() == Some(Disconnect::Slow) {
            return Poll::Ready(Err(Disconnect::Slow));
        }
        if let Some(message) = self.replay.pop_front() {
            let pending = self.replay.len();
            self.slot.info.replay_pending.store(pending, Relaxed);
            return Poll::Ready(Ok(self.taken(Delivery {
                message,
                trace: None,
                replayed: true,
            })));
        }
        if self.batch.is_empty() {
            let n = match self.slot.queue.lock().take_batch(cx, &mut self.batch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(n) => n,
            };
            if n == 0 {
                let state = &self.slot.state;
                return Poll::Ready(Err(state.get().unwrap_or(Disconnect::Shutdown)));
            }
        }
        let q = self.batch.pop_front().expect("a batch is non-empty here");
        self.slot.info.batched.store(self.batch.len(), Relaxed);
        Poll::Ready(Ok(self.taken(Delivery {
            message: q.message,
            trace: q.trace,
            replayed: false,
        })))
    }

    pub async fn recv(&mut self) -> Result<Delivery, Disconnect> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn taken(&mut self, d: Delivery) -> Delivery {
        self.taken += 1;
        let info = &self.slot.info;
        info.delivered.store(self.taken, Relaxed);
        info.last_offset.store(d.message.offset, Relaxed);
        d
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.id, &self.slot);
    }
}
