//! How `fanout`'s publishers pace themselves, and the one rule it shares
//! with `messenger-bench-nats` so the two compare at the same load.
//!
//! - [`Rule::Ack`] (the default): a publisher sends its next message as soon
//!   as `SendMessage` is acknowledged. The server acknowledges once the
//!   message is queued for every subscriber, before any delivery, so a
//!   publisher keeps more messages in flight than one that waits for a
//!   delivery.
//! - [`Rule::FirstReceipt`]: a publisher sends its next message once it is
//!   acknowledged **and** subscriber 0 has received the previous one. This is
//!   the NATS driver's rule (its `publish` returns once the bytes are
//!   buffered, so only a receipt can pace it). The suite uses it for every
//!   run it compares with nats-server, and for the Redis side of those groups.
//!
//! With `--rate`, publisher `i` of `P` sends its `n`-th message at
//! `start + (n·P + i) ÷ rate` ([`Schedule`]): the publishers are staggered by
//! `1 ÷ rate`, so the offered load is one message every `1 ÷ rate`, not a
//! burst of `P` messages every `P ÷ rate`. `messenger-bench-nats` uses the
//! same schedule.
//!
//! Invariant: [`Pace::wait`] returns once subscriber 0 has the message, or
//! once subscriber 0's stream has ended ([`Pace::release`]), so a publisher
//! never waits on a subscriber that is gone.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The pacing rule of `fanout --pace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    Ack,
    FirstReceipt,
}

impl Rule {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::FirstReceipt => "first-receipt",
        }
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ack" => Ok(Self::Ack),
            "first-receipt" => Ok(Self::FirstReceipt),
            other => Err(format!("'{other}' is not ack or first-receipt")),
        }
    }
}

/// Per publisher: the next sequence number subscriber 0 expects, and a
/// wake-up for the publisher waiting on it.
#[derive(Debug)]
pub(crate) struct Pace {
    next: Vec<AtomicU64>,
    delivered: Vec<Notify>,
}

impl Pace {
    pub(crate) fn new(publishers: usize) -> Self {
        Self {
            next: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..publishers).map(|_| Notify::new()).collect(),
        }
    }

    /// Subscriber 0 received message `seq` of publisher `p`.
    pub(crate) fn received(&self, p: usize, seq: u64) {
        if let (Some(next), Some(woken)) = (self.next.get(p), self.delivered.get(p)) {
            next.fetch_max(seq + 1, Ordering::Release);
            woken.notify_one();
        }
    }

    /// Subscriber 0's stream ended: no publisher waits on it any more.
    pub(crate) fn release(&self) {
        for (next, woken) in self.next.iter().zip(&self.delivered) {
            next.store(u64::MAX, Ordering::Release);
            woken.notify_one();
        }
    }

    /// Until subscriber 0 has message `seq` of publisher `p` (or is gone).
    pub(crate) async fn wait(&self, p: usize, seq: u64) {
        loop {
            let woken = self.delivered[p].notified();
            if self.next[p].load(Ordering::Acquire) > seq {
                return;
            }
            woken.await;
        }
    }
}

/// The send times of one paced publisher: `start + (n·P + i) ÷ rate`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    /// `1 ÷ rate`: the gap between two sends of all publishers together.
    gap: Duration,
    publishers: u32,
    id: u32,
}

impl Schedule {
    /// Publisher `id` of `publishers`, together sending `rate` messages/s.
    pub(crate) fn new(start: Instant, rate: f64, publishers: usize, id: usize) -> Self {
        Self {
            start,
            gap: Duration::from_secs_f64(1.0 / rate.max(1e-9)),
            publishers: publishers as u32,
            id: id as u32,
        }
    }

    /// When this publisher's `n`-th message (0-based) is due.
    pub(crate) fn due(&self, n: u64) -> Instant {
        let slot = n * u64::from(self.publishers) + u64::from(self.id);
        self.start + self.gap.mul_f64(slot as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_are_staggered_into_one_uniform_rate() {
        let start = Instant::now();
        let at = |id, n| {
            Schedule::new(start, 250.0, 4, id)
                .due(n)
                .duration_since(start)
        };
        assert_eq!(at(0, 0), Duration::ZERO);
        assert_eq!(at(1, 0), Duration::from_millis(4));
        assert_eq!(at(3, 0), Duration::from_millis(12));
        assert_eq!(at(0, 1), Duration::from_millis(16));
        assert_eq!(at(2, 10), Duration::from_millis(168));
        assert_eq!("first-receipt".parse(), Ok(Rule::FirstReceipt));
        assert!("both".parse::<Rule>().is_err());
    }

    #[tokio::test]
    async fn a_wait_ends_on_receipt_or_release() {
        let pace = Pace::new(2);
        pace.received(0, 0);
        pace.wait(0, 0).await;
        let waiting = pace.wait(1, 3);
        pace.received(1, 3);
        waiting.await;
        pace.release();
        pace.wait(0, 1_000).await;
        pace.received(9, 0);
    }
}
