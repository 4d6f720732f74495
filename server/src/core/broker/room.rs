//! Room in a Redis out of memory: when Redis refuses an append with `OOM`
//! (`maxmemory` reached, a policy that evicts nothing), this replica trims
//! the oldest half of the stream's bytes among the entries it has already
//! delivered ([`script::make_room`]) and keeps the stream within what is
//! left from then on (the learned byte bound, below
//! `MESSENGER_BROKER_STREAM_BYTES`, until the process restarts). The
//! publish is then tried once more; Redis took nothing the first time.
//!
//! Why this is safe for resume: resumes are served from each replica's own
//! history, which still holds what was trimmed; the stream's tail matters to
//! a replica's reader (which has read what this replica delivered a few
//! milliseconds after it) and to a replica that restarts later, which then
//! loads a shorter tail and reports a gap to a resume older than it, as for
//! any trimmed history. Nothing is lost silently.

use super::{Failure, RedisEngine, script};
use crate::app::config::ENV_BROKER_STREAM_BYTES;
use redis::aio::ConnectionManager;
use std::sync::atomic::Ordering;

impl RedisEngine {
    /// Makes room after an `OOM`; `true` if the stream gave some (the
    /// publish may be tried again).
    pub(super) async fn make_room(&self, conn: &mut ConnectionManager) -> bool {
        let seen = self.seen();
        let keys = (&*self.stream, &*self.meta);
        let (before, after) = match script::make_room(conn, keys, seen.get()).await {
            Ok(sizes) => sizes,
            Err(e) => {
                let failure = Failure::Redis(e);
                tracing::warn!(broker = %self.name, error = %failure, "broker out of memory; making room failed");
                return false;
            }
        };
        if after >= before {
            return false;
        }
        let learned = usize::try_from(after).unwrap_or(usize::MAX);
        self.room.fetch_min(learned, Ordering::Relaxed);
        self.metrics.room_made();
        tracing::warn!(
            broker = %self.name,
            stream = %self.stream,
            bytes_before = before,
            bytes_after = after,
            "broker out of memory (Redis maxmemory): trimmed the oldest entries this server has \
             delivered and keeps the stream within {after} bytes until restart; set {} to at most \
             that, or raise Redis maxmemory",
            ENV_BROKER_STREAM_BYTES,
        );
        true
    }
}
