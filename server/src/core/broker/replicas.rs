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

use super::{Failure, RedisEngine};
use redis::aio::ConnectionManager;
use std::time::Duration;

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
}
