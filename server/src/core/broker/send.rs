//! Publishing one message ([`RedisEngine::send`]): queue it for the group
//! commit ([`super::commit`]), then wait until this replica's hub has it,
//! delivered by the batch's first sender ([`super::deliver`]) or by the
//! reader. Invariant: `send` answers `Ok` only once the entry is in the
//! stream and queued to every local subscriber, all within the broker
//! timeout; every failure goes through [`RedisEngine::publish_failed`].

use super::script::Stamp;
use super::{BrokerError, Failure, Position, RedisEngine, commit};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::time::timeout_at;

impl RedisEngine {
    /// Publishes one message and returns once it is queued to every local
    /// subscriber, all within the broker timeout. Concurrent sends share
    /// script calls ([`commit`]); the first sender of a batch to run hands
    /// its entries to the local hub when they are the next ones this replica
    /// expects (saving the reader's `XREAD` round trip), else the reader
    /// does. Returns the
    /// broker's stamp (epoch, offset, `sendTime`, entry id). A send before
    /// [`start`](Self::start) waits for it, within the same timeout.
    pub async fn send(
        &self,
        author: &str,
        text: &str,
        traceparent: Option<&str>,
    ) -> Result<Stamp, BrokerError> {
        // A Sentinel failover under way: not sent, at once.
        if let Some(failure) = self.failing_over() {
            return Err(self.publish_failed(failure));
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let (reply, answer) = oneshot::channel();
        let claim = Arc::new(commit::Claim::default());
        let pending = commit::Pending {
            author: author.to_owned(),
            text: text.to_owned(),
            traceparent: traceparent.map(str::to_owned),
            queued: started,
            claim: Arc::clone(&claim),
            reply,
        };
        if self.queue.send(pending).is_err() {
            return Err(self.publish_failed(Failure::Stopped));
        }
        let committed = match timeout_at(deadline, answer).await {
            Ok(Ok(Ok(committed))) => committed,
            Ok(Ok(Err(failure))) => return Err(self.publish_failed(failure)),
            Ok(Err(_)) => return Err(self.publish_failed(Failure::Stopped)),
            Err(_) if claim.abandon() => {
                return Err(self.publish_failed(Failure::Queued(self.timeout)));
            }
            Err(_) => return Err(self.publish_failed(Failure::Timeout(self.timeout))),
        };
        let stamp = committed.stamp;
        if committed.staged && self.deliver_staged(&stamp) {
            return Ok(stamp);
        }
        let mut position = self.position.subscribe();
        // Delivered, or this replica moved on to another epoch than the
        // stamp's (the broker lost its history again), where this offset
        // will never come. A replica still behind, in the epoch before the
        // stamp's, is not that: it is about to load the stamp's epoch.
        let behind = position.borrow().epoch.clone();
        let settled = |p: &Position| {
            let other = *p.epoch != *stamp.epoch;
            (other && *p.epoch != *behind) || (!other && p.offset >= stamp.offset)
        };
        match timeout_at(deadline, position.wait_for(settled)).await {
            Ok(Ok(p)) if *p.epoch == *stamp.epoch => Ok(stamp),
            Ok(Ok(_)) => Err(self.publish_failed(Failure::Lost {
                offset: stamp.offset,
            })),
            _ => Err(self.publish_failed(Failure::NotDelivered {
                offset: stamp.offset,
                timeout: self.timeout,
            })),
        }
    }

    /// Delivers what its batch staged, if it is next; `true` once `stamp`'s
    /// entry reached the hub. A hub shutting down counts as reached: the
    /// entry is in the stream, and the local streams are ending anyway.
    fn deliver_staged(&self, stamp: &Stamp) -> bool {
        let Some(local) = self.local.get() else {
            return false;
        };
        let mut delivered = self.delivered.lock();
        delivered.deliver_staged(self, local).is_err() || delivered.has(&stamp.epoch, stamp.offset)
    }
}
