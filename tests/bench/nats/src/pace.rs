//! The driver's pacing: the first subscriber's receipts, which a max-rate
//! publisher waits on ([`Pace`]), and the staggered send times of a fixed
//! rate ([`Schedule`]). Both are the rules of `messenger-bench fanout`
//! (`tests/bench/src/pace.rs`: `--pace first-receipt` and `--rate`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Per publisher: the next seq the first subscriber expects, and a wake-up.
pub(crate) struct Pace {
    pub(crate) next: Vec<AtomicU64>,
    pub(crate) delivered: Vec<Notify>,
}

impl Pace {
    pub(crate) fn new(publishers: usize) -> Self {
        Self {
            next: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..publishers).map(|_| Notify::new()).collect(),
        }
    }

    /// Until the first subscriber has received message `seq` of `p`.
    pub(crate) async fn wait(&self, p: usize, seq: u64) {
        loop {
            let delivered = self.delivered[p].notified();
            if self.next[p].load(Ordering::Acquire) > seq {
                return;
            }
            delivered.await;
        }
    }
}

/// Publisher `id` of `publishers` at `rate` messages/s over all of them:
/// its `n`-th message is due at `start + (n·publishers + id) ÷ rate`.
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    gap: Duration,
    publishers: u64,
    id: u64,
}

impl Schedule {
    pub(crate) fn new(start: Instant, rate: f64, publishers: usize, id: usize) -> Self {
        Self {
            start,
            gap: Duration::from_secs_f64(1.0 / rate.max(1e-9)),
            publishers: publishers as u64,
            id: id as u64,
        }
    }

    pub(crate) fn due(&self, n: u64) -> Instant {
        self.start + self.gap.mul_f64((n * self.publishers + self.id) as f64)
    }
}
