//! A tail's queue between its reader (the gRPC stream) and the browser's
//! side, and the policy that cuts a tail.
//!
//! Invariants:
//! - A queued message holds a place (of the tail's `queue` events) and its
//!   bytes from two budgets, its tail's and the client's [`QueuePool`],
//!   until the browser's side takes it or the queue is cleared; a message
//!   never takes more than either holds, so any message fits an empty queue.
//! - Live ([`Queue::offer`]) never waits: no room (events, the tail's bytes,
//!   the pool's) is a cut. A replay ([`Queue::put`]) waits for room at most
//!   the stall bound, then is a cut too.
//! - A cut is said once ([`Ends::cut`]): counted, logged with its reason,
//!   kept for the browser's side, and the queue is emptied by the reader at
//!   once, so a browser that never reads again (whose response is never
//!   polled again) holds none of it. Its heap is then given back ([`Trim`]).
//! - The browser's side sees every event queued before the reader ended,
//!   then the end; once it leaves ([`Receiver`] dropped) the queue is
//!   emptied and the reader stops.

use super::TailEvent;
use crate::trim::Trim;
use metrics::Counter;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The bytes of messages every tail's queue may hold together: one pool
/// per client, shared by its `/events` streams.
#[derive(Clone)]
pub struct QueuePool {
    permits: Arc<Semaphore>,
    bytes: usize,
}

impl QueuePool {
    /// A pool of `bytes` (at most `u32::MAX`).
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.clamp(1, u32::MAX as usize);
        Self {
            permits: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// Bytes queued now, over all tails.
    pub fn queued(&self) -> usize {
        self.bytes - self.permits.available_permits()
    }
}

/// Why a tail was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Live, its own queue (events or bytes) was full: the browser reads
    /// slower than the chat is written.
    Behind,
    /// Live, every tail's queues together held the pool's bytes.
    Pool,
    /// Replaying, the browser left no room in its queue for the stall bound.
    Stalled,
}

impl Cut {
    /// What the browser is told (a last SSE comment) and the log says.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Behind => "fell a whole queue behind the live stream",
            Self::Pool => "the client's /events queues are full",
            Self::Stalled => "took nothing from a full queue during a replay",
        }
    }
}

/// A queued event with what it holds (a place, its tail's bytes and the
/// pool's), given back when it is taken or dropped.
pub(super) struct Queued {
    event: TailEvent,
    _held: Option<[OwnedSemaphorePermit; 3]>,
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The browser's side left (the receiver is gone).
    Left,
    Cut(Cut),
}

/// What both ends share.
struct Shared {
    items: Mutex<VecDeque<Queued>>,
    /// An event was queued, or the reader ended.
    ready: Notify,
    /// The reader ended: nothing more will be queued.
    ended: AtomicBool,
    /// The browser's side left.
    left: CancellationToken,
}

impl Shared {
    /// Empties the queue, dropping its events outside the lock.
    fn clear(&self) {
        let items = std::mem::take(&mut *self.items.lock());
        drop(items);
    }
}

/// A new queue of at most `events` events and `bytes` bytes of messages,
/// drawing on `pool`; a replay waits at most `stall` for room.
pub(super) fn queue(
    events: usize,
    bytes: usize,
    pool: QueuePool,
    stall: Duration,
) -> (Queue, Receiver) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        ended: AtomicBool::new(false),
        left: CancellationToken::new(),
    });
    let budget = bytes.clamp(1, u32::MAX as usize);
    let capacity = events.max(1);
    let queue = Queue {
        shared: Arc::clone(&shared),
        places: Arc::new(Semaphore::new(capacity)),
        capacity,
        own: Arc::new(Semaphore::new(budget)),
        budget,
        pool,
        stall,
    };
    (queue, Receiver { shared })
}

/// The browser's end of a tail's queue.
pub(super) struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// The next event; `None` once the reader ended and all was taken.
    pub(super) async fn recv(&self) -> Option<TailEvent> {
        loop {
            let ready = self.shared.ready.notified();
            if let Some(queued) = self.shared.items.lock().pop_front() {
                return Some(queued.event);
            }
            if self.shared.ended.load(Ordering::Acquire) {
                return None;
            }
            ready.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.left.cancel();
        self.shared.clear();
    }
}

/// The reader's end of a tail's queue, bounded in events, in its own bytes
/// and in the pool's.
pub(super) struct Queue {
    shared: Arc<Shared>,
    places: Arc<Semaphore>,
    capacity: usize,
    own: Arc<Semaphore>,
    budget: usize,
    pool: QueuePool,
    stall: Duration,
}

impl Queue {
    /// Resolves once the browser's side left.
    pub(super) async fn closed(&self) {
        self.shared.left.cancelled().await;
    }

    fn push(&self, queued: Queued) {
        self.shared.items.lock().push_back(queued);
        self.shared.ready.notify_one();
    }

    /// Queues an event that holds nothing (the once-per-stream `Open` and
    /// `Gap`, before the reader starts).
    pub(super) fn push_bare(&self, event: TailEvent) {
        self.push(Queued { event, _held: None });
    }

    /// The permits `event` takes from its tail and from the pool.
    fn charge(&self, event: &TailEvent) -> (u32, u32) {
        let bytes = event.bytes();
        let own = bytes.min(self.budget) as u32;
        (own, bytes.min(self.pool.bytes) as u32)
    }

    /// Queues a live event without waiting.
    pub(super) fn offer(&self, event: TailEvent) -> Result<(), Refused> {
        if self.shared.left.is_cancelled() {
            return Err(Refused::Left);
        }
        let (own, all) = self.charge(&event);
        let behind = |_| Refused::Cut(Cut::Behind);
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(behind)?;
        let own = Arc::clone(&self.own)
            .try_acquire_many_owned(own)
            .map_err(behind)?;
        let all = Arc::clone(&self.pool.permits)
            .try_acquire_many_owned(all)
            .map_err(|_| Refused::Cut(Cut::Pool))?;
        self.push(Queued {
            event,
            _held: Some([place, own, all]),
        });
        Ok(())
    }

    /// Queues a replayed event once there is room, waiting at most the
    /// stall bound for it.
    pub(super) async fn put(&self, event: TailEvent) -> Result<(), Refused> {
        let (own, all) = self.charge(&event);
        let room = async {
            let place = Arc::clone(&self.places).acquire_owned().await;
            let own = Arc::clone(&self.own).acquire_many_owned(own).await;
            let all = Arc::clone(&self.pool.permits).acquire_many_owned(all).await;
            // None of the semaphores is ever closed.
            match (place, own, all) {
                (Ok(place), Ok(own), Ok(all)) => Ok([place, own, all]),
                _ => Err(Refused::Left),
            }
        };
        let held = tokio::select! {
            biased;
            () = self.closed() => return Err(Refused::Left),
            held = tokio::time::timeout(self.stall, room) => {
                held.unwrap_or(Err(Refused::Cut(Cut::Stalled)))?
            }
        };
        self.push(Queued {
            event,
            _held: Some(held),
        });
        Ok(())
    }
}

impl Drop for Queue {
    /// The reader ended: the browser's side gets what is queued, then the end.
    fn drop(&mut self) {
        self.shared.ended.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

/// How the reader ends a tail it cuts.
pub(super) struct Ends {
    pub(super) cut: CancellationToken,
    pub(super) cause: Arc<OnceLock<Cut>>,
    pub(super) counter: Counter,
    pub(super) trim: Trim,
}

impl Ends {
    /// Counts and logs the cut, keeps its reason, empties the queue and
    /// signals the cut.
    pub(super) fn cut(&self, cause: Cut, queue: &Queue, offset: u64) {
        self.counter.increment(1);
        tracing::warn!(
            reason = cause.reason(),
            queue = queue.capacity,
            queue_bytes = queue.budget,
            pool_bytes = queue.pool.bytes,
            stall_secs = queue.stall.as_secs_f64(),
            offset,
            "an /events reader was cut (it resumes on reconnect)"
        );
        let _first = self.cause.set(cause);
        queue.shared.clear();
        self.cut.cancel();
        self.trim.request();
    }
}

#[cfg(test)]
mod tests;
