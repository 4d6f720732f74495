//! This replica's one reader: it hands every broker entry to the hub through
//! [`Delivered::deliver`], which skips the entries their accepting replica
//! (this one) delivered early. It holds its own connection (a blocking `XREAD` would stall every
//! publish sharing a multiplexed one), reads from its last entry id, and on
//! any failure reconnects with capped exponential backoff, logging once per
//! change of state.
//!
//! Each (re)connection first asks the stream's epoch ([`script::epoch`]).
//! The same epoch continues from the last entry id. A new one (first start, or
//! the stream was lost) reloads the tail with `XREVRANGE` and restarts local
//! history there, ending the local streams with "history lost". An entry
//! whose offset skips ahead (trimmed before this replica read it) restarts
//! local history at that entry the same way; an entry that is not ours is
//! skipped with a warning and `messenger_broker_errors_total{op="decode"}`.
//!
//! With `MESSENGER_BROKER_MIN_REPLICAS` N > 0, what a read or a load
//! returned reaches the hub only once N replicas hold it
//! ([`RedisEngine::wait_read_replicated`]: the replica is NOT_SERVING
//! while it waits); a failure meanwhile leaves `last_id` where it was, so
//! the reconnection reads them again.

use super::entry::{self, Entry};
use super::{Failure, RedisEngine, script};
use crate::core::fanout::{Fanout, ShuttingDown};
use crate::ops::metrics::BrokerOp;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use std::sync::Arc;
use std::time::Duration;

/// How long one `XREAD` blocks waiting for entries, at most: never longer
/// than the broker timeout, so a reader whose connection went silent is
/// found within twice `MESSENGER_BROKER_TIMEOUT_MS` (the block, then the
/// timeout for its answer) and the replica turns NOT_SERVING.
const BLOCK: Duration = Duration::from_millis(1_000);
/// Most entries one `XREAD` returns.
const BATCH: usize = 512;
/// First and largest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Runs until the hub shuts down.
pub(super) async fn run(broker: Arc<RedisEngine>, fanout: Arc<Fanout>) {
    // The id of the last entry read: where the next `XREAD` starts.
    let mut last_id = "0-0".to_owned();
    let mut backoff = BACKOFF_MIN;
    let mut moved = broker.moved.subscribe();
    loop {
        // With Sentinel: the primary, asked at every (re)connection.
        let followed = broker.follow().await;
        moved.borrow_and_update();
        let failure = match followed {
            Err(failure) => failure,
            Ok(()) => tokio::select! {
                ended = session(&broker, &fanout, &mut last_id, &mut backoff) => match ended {
                    Ok(ShuttingDown) => return,
                    Err(failure) => broker.not_primary(failure),
                },
                // A new primary: this session's node is not it any more.
                _ = moved.changed() => Failure::Moved,
            },
        };
        if matches!(failure, Failure::Moved) {
            broker.set_up(false, Some(&failure));
            continue;
        }
        broker.metrics.error(BrokerOp::Read);
        broker.note_refusal(&failure);
        broker.set_up(false, Some(&failure));
        // A new primary is tried at once, not after the backoff.
        let _ = tokio::time::timeout(backoff, moved.changed()).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if fanout.is_shut_down() {
            return;
        }
    }
}

/// One connection's life: load, then read until something fails.
async fn session(
    broker: &RedisEngine,
    fanout: &Fanout,
    last_id: &mut String,
    backoff: &mut Duration,
) -> Result<ShuttingDown, Failure> {
    let block = BLOCK.min(broker.timeout);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(broker.timeout))
        .set_response_timeout(Some(block + broker.timeout));
    let mut conn = broker
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    load(broker, fanout, &mut conn, last_id).await?;
    broker.warm_publisher().await?;
    broker.set_up(true, None);
    *backoff = BACKOFF_MIN;
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&broker.stream)
            .arg(&*last_id)
            .query_async(&mut conn)
            .await
            .inspect_err(|e| {
                // No answer within the block and the timeout: the stall rule.
                if e.is_timeout() {
                    broker.metrics.reader_stall();
                }
            })?;
        broker.set_up(true, None);
        if reply.is_none() {
            // Idle for a whole block: check the epoch, so a new one another
            // replica made (a rollback it found) ends this one's streams too.
            load(broker, fanout, &mut conn, last_id).await?;
        }
        let entries: Vec<StreamId> = (reply.into_iter().flat_map(|r| r.keys))
            .flat_map(|k| k.ids)
            .collect();
        if let Some(newest) = entries.last() {
            // With MIN_REPLICAS: nothing reaches the hub before it is replicated.
            let offset = offset_of(newest);
            if !(broker.wait_read_replicated(&mut conn, offset, fanout)).await? {
                return Ok(ShuttingDown);
            }
        }
        for raw in entries {
            last_id.clone_from(&raw.id);
            let Some(entry) = decoded(broker, &raw) else {
                continue;
            };
            let epoch = broker.delivered.lock().epoch.clone();
            if epoch.as_deref() != Some(entry.epoch.as_str()) {
                // A new epoch appeared under us, or a foreign entry: the metadata decides.
                load(broker, fanout, &mut conn, last_id).await?;
                if broker.delivered.lock().epoch == epoch {
                    skip(
                        broker,
                        &raw.id,
                        &format!("epoch {:?} is not the stream's", entry.epoch),
                    );
                    continue;
                }
                break;
            }
            if broker.delivered.lock().conflicts(entry.offset, &raw.id) {
                // Another entry than the one delivered at this offset: the
                // broker rolled back and others wrote past it.
                tracing::warn!(
                    broker = %broker.name,
                    offset = entry.offset,
                    id = %raw.id,
                    "broker stream holds another entry at an offset this server delivered (rolled back)"
                );
                load(broker, fanout, &mut conn, last_id).await?;
                if broker.delivered.lock().epoch == epoch {
                    skip(broker, &raw.id, "another entry at a delivered offset");
                    continue;
                }
                break;
            }
            let delivered = (broker.delivered.lock()).deliver(broker, fanout, entry, &raw.id, true);
            if delivered.is_err() {
                return Ok(ShuttingDown);
            }
        }
        if fanout.is_shut_down() {
            return Ok(ShuttingDown);
        }
    }
}

/// Reads the epoch; on a new one, loads the tail into a restarted history
/// and moves `last_id` to its newest entry.
async fn load(
    broker: &RedisEngine,
    fanout: &Fanout,
    conn: &mut MultiplexedConnection,
    last_id: &mut String,
) -> Result<(), Failure> {
    let keys = (broker.stream.as_str(), broker.meta.as_str());
    let seen = broker.seen();
    let current = seen.epoch.clone();
    let loaded = async {
        let (epoch, offset) = script::epoch(conn, keys, seen.get()).await?;
        if current.as_deref() == Some(epoch.as_str()) {
            return Ok(None);
        }
        let tail = read_tail(broker, conn).await?;
        Ok::<_, redis::RedisError>(Some((epoch, offset, tail)))
    };
    let (epoch, offset, tail) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return Ok(()),
        Err(e) => {
            broker.metrics.error(BrokerOp::Load);
            return Err(e.into());
        }
    };
    // Shutting down while it waits: nothing more to deliver.
    if let Some(newest) = tail.first()
        && !(broker.wait_read_replicated(conn, offset_of(newest), fanout)).await?
    {
        return Ok(());
    }
    let newest_id = tail.first().map(|e| e.id.clone());
    let mut entries: Vec<(Entry, &str)> = (tail.iter().rev())
        .filter_map(|raw| Some((decoded(broker, raw)?, raw.id.as_str())))
        .filter(|(e, _)| e.epoch == epoch)
        .collect();
    // Keep the contiguous run that ends at the newest.
    if let Some(cut) = (1..entries.len())
        .rev()
        .find(|&i| entries[i].0.offset != entries[i - 1].0.offset + 1)
    {
        entries.drain(..cut);
    }
    if broker.tail == 0 {
        entries.clear();
    }
    let newest = entries.first().map_or(offset, |(e, _)| e.offset - 1);
    // Senders deliver early only into the epoch held here, so none can
    // interleave with the restart and the tail.
    let mut delivered = broker.delivered.lock();
    let ended = fanout.restart(epoch.clone(), newest);
    let had = delivered.restart(&epoch, newest);
    if had.is_some() || ended > 0 {
        tracing::warn!(
            broker = %broker.name,
            epoch,
            previous = ?had,
            streams_ended = ended,
            "broker history lost (new epoch); ended local streams with UNAVAILABLE so clients resubscribe"
        );
    }
    *last_id = newest_id.unwrap_or_else(|| "0-0".to_owned());
    let loaded = entries.len();
    for (entry, id) in entries {
        if delivered.deliver(broker, fanout, entry, id, false).is_err() {
            break;
        }
    }
    delivered.publish(broker);
    drop(delivered);
    tracing::info!(broker = %broker.name, stream = %broker.stream, epoch, offset, loaded, "broker stream loaded");
    Ok(())
}

/// The newest entries, newest first, in pages of [`BATCH`]: at most the
/// history's message count, and no more pages once their text passes its
/// byte budget (so a long stream of large messages is not pulled whole).
async fn read_tail(
    broker: &RedisEngine,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<Vec<StreamId>> {
    let mut tail: Vec<StreamId> = Vec::new();
    let mut bytes = 0usize;
    let mut end = "+".to_owned();
    while tail.len() < broker.tail && bytes < broker.tail_bytes {
        let page: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&broker.stream)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(BATCH.min(broker.tail - tail.len()))
            .query_async(conn)
            .await?;
        let full = page.ids.len() == BATCH.min(broker.tail - tail.len());
        let Some(oldest) = page.ids.last() else { break };
        end = format!("({}", oldest.id);
        bytes += (page.ids.iter().flat_map(|e| e.map.values()))
            .map(|v| match v {
                redis::Value::BulkString(b) => b.len(),
                _ => 0,
            })
            .sum::<usize>();
        tail.extend(page.ids);
        if !full {
            break;
        }
    }
    Ok(tail)
}

/// The offset an entry carries (0 when it is not ours), for what the reader
/// waits on.
fn offset_of(raw: &StreamId) -> u64 {
    entry::decode(raw).map_or(0, |e| e.offset)
}

/// The entry, or `None` after counting and logging why it was skipped.
fn decoded(broker: &RedisEngine, raw: &StreamId) -> Option<Entry> {
    entry::decode(raw)
        .map_err(|e| skip(broker, &raw.id, &e.to_string()))
        .ok()
}

fn skip(broker: &RedisEngine, id: &str, why: &str) {
    broker.metrics.error(BrokerOp::Decode);
    tracing::warn!(stream = %broker.stream, id, why, "skipping a malformed broker entry");
}
