//! A tail's queue between its reader (the gRPC stream) and the browser's
//! side, and the policy that cuts a tail.
//!
//! Invariants:
//! - A queued message holds its bytes from two budgets, its tail's and the
//!   client's [`QueuePool`], until the browser's side takes it (or the queue
//!   is dropped); a message never takes more than either holds, so any
//!   message fits an empty queue.
//! - Live ([`Queue::offer`]) never waits: no room (events, the tail's bytes,
//!   the pool's) is a cut. A replay ([`Queue::put`]) waits for room at most
//!   the stall bound, then is a cut too.
//! - A cut is said once: counted, logged with its reason, and kept for the
//!   browser's side ([`Ends::cut`]).

use super::TailEvent;
use metrics::Counter;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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

/// A queued event with the bytes it holds (its tail's and the pool's),
/// given back when it is taken or dropped.
pub(super) struct Queued {
    pub(super) event: TailEvent,
    _held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Queued {
    /// An event that holds no bytes (the once-per-stream `Open` and `Gap`).
    pub(super) fn bare(event: TailEvent) -> Self {
        Self { event, _held: None }
    }
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The browser's side left (the receiver is gone).
    Left,
    Cut(Cut),
}

/// The reader's end of a tail's queue, bounded in events, in its own bytes
/// and in the pool's.
pub(super) struct Queue {
    tx: mpsc::Sender<Queued>,
    own: Arc<Semaphore>,
    budget: usize,
    pool: QueuePool,
    stall: Duration,
}

impl Queue {
    pub(super) fn new(
        tx: mpsc::Sender<Queued>,
        bytes: usize,
        pool: QueuePool,
        stall: Duration,
    ) -> Self {
        let budget = bytes.clamp(1, u32::MAX as usize);
        Self {
            tx,
            own: Arc::new(Semaphore::new(budget)),
            budget,
            pool,
            stall,
        }
    }

    /// Resolves once the browser's side left.
    pub(super) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// The permits `event` takes from its tail and from the pool.
    fn charge(&self, event: &TailEvent) -> (u32, u32) {
        let bytes = event.bytes();
        let own = bytes.min(self.budget) as u32;
        (own, bytes.min(self.pool.bytes) as u32)
    }

    /// Queues a live event without waiting.
    pub(super) fn offer(&self, event: TailEvent) -> Result<(), Refused> {
        let (own, all) = self.charge(&event);
        let own = Arc::clone(&self.own)
            .try_acquire_many_owned(own)
            .map_err(|_| Refused::Cut(Cut::Behind))?;
        let all = Arc::clone(&self.pool.permits)
            .try_acquire_many_owned(all)
            .map_err(|_| Refused::Cut(Cut::Pool))?;
        let queued = Queued {
            event,
            _held: Some((own, all)),
        };
        self.tx.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(_) => Refused::Left,
            mpsc::error::TrySendError::Full(_) => Refused::Cut(Cut::Behind),
        })
    }

    /// Queues a replayed event once there is room, waiting at most the
    /// stall bound for it.
    pub(super) async fn put(&self, event: TailEvent) -> Result<(), Refused> {
        let (own, all) = self.charge(&event);
        let room = async {
            let own = Arc::clone(&self.own).acquire_many_owned(own).await;
            let all = Arc::clone(&self.pool.permits).acquire_many_owned(all).await;
            // Neither semaphore is ever closed.
            let (Ok(own), Ok(all)) = (own, all) else {
                return Err(Refused::Left);
            };
            let queued = Queued {
                event,
                _held: Some((own, all)),
            };
            self.tx.send(queued).await.map_err(|_| Refused::Left)
        };
        tokio::select! {
            () = self.tx.closed() => Err(Refused::Left),
            queued = tokio::time::timeout(self.stall, room) => {
                queued.unwrap_or(Err(Refused::Cut(Cut::Stalled)))
            }
        }
    }
}

/// How the reader ends a tail it cuts.
pub(super) struct Ends {
    pub(super) cut: CancellationToken,
    pub(super) cause: Arc<OnceLock<Cut>>,
    pub(super) counter: Counter,
}

impl Ends {
    /// Counts and logs the cut, keeps its reason, and signals it.
    pub(super) fn cut(&self, cause: Cut, queue: &Queue, offset: u64) {
        self.counter.increment(1);
        tracing::warn!(
            reason = cause.reason(),
            queue = queue.tx.max_capacity(),
            queue_bytes = queue.budget,
            pool_bytes = queue.pool.bytes,
            stall_secs = queue.stall.as_secs_f64(),
            offset,
            "an /events reader was cut (it resumes on reconnect)"
        );
        let _first = self.cause.set(cause);
        self.cut.cancel();
    }
}

#[cfg(test)]
mod tests;
