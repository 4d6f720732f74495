//! `MESSENGER_BROKER_MIN_REPLICAS` (issue 25): with N > 0, a batch is
//! acknowledged only once Redis `WAIT N <ms>` confirms that N replicas hold
//! it. `WAIT` covers the writes of the connection that issues it and blocks
//! that connection, so it runs on the publishing connection right after the
//! batch's script, and never on one that other work shares. Its timeout is
//! what is left of the batch's deadline.
//!
//! What it guarantees, with Redis's own caveat: an acknowledged message was
//! held by N replicas when it was acknowledged, so a failover to one of them
//! keeps it; `WAIT` does not make Redis strongly consistent (a failover can
//! still promote a replica that lacks it). When the wait runs out the
//! message is stored on the primary but not confirmed replicated: the
//! sender is told the outcome is unknown.
//!
//! The reader holds back what it reads the same way: with N > 0 it hands
//! entries to the hub only once N replicas hold them
//! ([`RedisEngine::wait_read_replicated`]). Without that, a replica's reader
//! could deliver an entry that is on the primary alone (its publisher still
//! in its `WAIT`); a failover then loses it, the new primary reuses its
//! offset for an acknowledged message of another replica, and the rollback
//! that replica's reader finds starts a new epoch that takes the
//! acknowledged message with it (found by the 20-failover measurement and
//! `soak-faults`: acknowledged messages missing, each with a reported gap).
//! So with N > 0 no subscriber ever holds an entry a failover to a replica
//! that confirmed it can lose, and the stream goes on across the failover.
//! It costs the other replicas' subscribers the replication round trip.

use super::{Failure, RedisEngine};
use crate::core::fanout::Fanout;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use std::time::Duration;

/// The reader's own key, `<stream>:read-mark`: the write that makes its
/// `WAIT` cover what it has read. It holds the newest offset read, and
/// expires after [`READ_MARK_TTL_MS`].
pub(super) const READ_MARK_SUFFIX: &str = "read-mark";
const READ_MARK_TTL_MS: u64 = 60_000;

/// How much sooner than the batch's deadline `WAIT` is told to give up, so
/// its answer arrives before the deadline does: Redis checks a blocked
/// client's timeout once per event-loop turn, which waits up to 100 ms at
/// its default `hz 10` (measured: a `WAIT` given the whole remaining time
/// answered after the deadline).
const MARGIN: Duration = Duration::from_millis(150);

impl RedisEngine {
    /// Waits for `min_replicas` to hold this connection's writes up to the
    /// batch ending at `offset`; `Ok` at once when none are asked for.
    pub(super) async fn wait_replicas(
        &self,
        conn: &mut ConnectionManager,
        offset: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), Failure> {
        let wanted = self.min_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ms = left.saturating_sub(MARGIN).as_millis().max(1) as u64;
        let replicas: u64 = redis::cmd("WAIT")
            .arg(wanted)
            .arg(ms)
            .query_async(conn)
            .await?;
        if replicas >= wanted {
            return Ok(());
        }
        self.metrics.wait_timeout();
        Err(Failure::NotReplicated {
            offset,
            replicas,
            wanted,
        })
    }

    /// With `min_replicas` N > 0, waits until N replicas hold every entry
    /// the reader's connection has read (up to `offset`): `WAIT` covers the
    /// connection's own writes, so it first writes its mark
    /// (`SET <stream>:read-mark <offset> PX 60000`; on a demoted node that
    /// answers `READONLY`, which the reader follows). `true` at once with
    /// N = 0, or once N replicas hold them; `false` if the hub shut down
    /// meanwhile. While fewer than N do (each `WAIT` within the broker
    /// timeout, repeated) the replica is down (NOT_SERVING) with
    /// [`Failure::NotReplicated`] as the reason, and up again after.
    /// Errors: the connection's.
    pub(super) async fn wait_read_replicated(
        &self,
        conn: &mut MultiplexedConnection,
        offset: u64,
        fanout: &Fanout,
    ) -> Result<bool, Failure> {
        let wanted = self.min_replicas;
        if wanted == 0 {
            return Ok(true);
        }
        let ms = self.timeout.saturating_sub(MARGIN).as_millis().max(1) as u64;
        let mut waited = false;
        loop {
            let (replicas,): (u64,) = redis::pipe()
                .cmd("SET")
                .arg(&self.read_mark)
                .arg(offset)
                .arg("PX")
                .arg(READ_MARK_TTL_MS)
                .ignore()
                .cmd("WAIT")
                .arg(wanted)
                .arg(ms)
                .query_async(conn)
                .await?;
            if replicas >= wanted {
                if waited {
                    self.set_up(true, None);
                }
                return Ok(true);
            }
            if !waited {
                let why = Failure::NotReplicated {
                    offset,
                    replicas,
                    wanted,
                };
                self.set_up(false, Some(&why));
                waited = true;
            }
            if fanout.is_shut_down() {
                return Ok(false);
            }
        }
    }
}
