//! This replica's one reader: the only task that hands broker entries to the
//! hub. It holds its own connection (a blocking `XREAD` would stall every
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

use super::entry::{self, Entry};
use super::{Failure, Position, RedisEngine, script};
use crate::engine::{Draft, Message};
use crate::hub::{Hub, ShuttingDown};
use crate::metrics::{BrokerOp, DisconnectReason, Metrics};
use crate::trace::ReceiveTrace;
use messenger_proto::time::unix_nanos_now;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one `XREAD` blocks waiting for entries.
const BLOCK: Duration = Duration::from_millis(1_000);
/// Most entries one `XREAD` returns.
const BATCH: usize = 512;
/// First and largest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The reader's place in the stream.
struct Cursor {
    /// `None` until the first load.
    epoch: Option<Arc<str>>,
    newest: u64,
    last_id: String,
}

/// Runs until the hub shuts down.
pub(super) async fn run(broker: Arc<RedisEngine>, hub: Arc<Hub>, metrics: Arc<Metrics>) {
    let mut cursor = Cursor {
        epoch: None,
        newest: 0,
        last_id: "0-0".to_owned(),
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let failure = match session(&broker, &hub, &metrics, &mut cursor, &mut backoff).await {
            Ok(ShuttingDown) => return,
            Err(failure) => failure,
        };
        broker.metrics.error(BrokerOp::Read);
        broker.set_up(false, Some(&failure));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if hub.is_shut_down() {
            return;
        }
    }
}

/// One connection's life: load, then read until something fails.
async fn session(
    broker: &RedisEngine,
    hub: &Hub,
    metrics: &Metrics,
    cursor: &mut Cursor,
    backoff: &mut Duration,
) -> Result<ShuttingDown, Failure> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(broker.timeout))
        .set_response_timeout(Some(BLOCK + broker.timeout));
    let mut conn = broker
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    load(broker, hub, metrics, &mut conn, cursor).await?;
    broker.warm_publisher().await?;
    broker.set_up(true, None);
    *backoff = BACKOFF_MIN;
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&broker.stream)
            .arg(&cursor.last_id)
            .query_async(&mut conn)
            .await?;
        broker.set_up(true, None);
        let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        for raw in entries {
            cursor.last_id.clone_from(&raw.id);
            let Some(entry) = decoded(broker, &raw) else {
                continue;
            };
            if cursor.epoch.as_deref() != Some(entry.epoch.as_str()) {
                // A new epoch appeared under us, or a foreign entry: the metadata decides.
                let before = cursor.epoch.clone();
                load(broker, hub, metrics, &mut conn, cursor).await?;
                if cursor.epoch == before {
                    skip(
                        broker,
                        &raw.id,
                        &format!("epoch {:?} is not the stream's", entry.epoch),
                    );
                    continue;
                }
                break;
            }
            if deliver(broker, (hub, metrics), cursor, entry, Some(&raw.id)).is_err() {
                return Ok(ShuttingDown);
            }
        }
        if hub.is_shut_down() {
            return Ok(ShuttingDown);
        }
    }
}

/// Reads the epoch; on a new one, loads the tail into a restarted history.
async fn load(
    broker: &RedisEngine,
    hub: &Hub,
    metrics: &Metrics,
    conn: &mut MultiplexedConnection,
    cursor: &mut Cursor,
) -> Result<(), Failure> {
    let keys = (broker.stream.as_str(), broker.meta.as_str());
    let loaded = async {
        let (epoch, offset) = script::epoch(conn, keys).await?;
        if cursor.epoch.as_deref() == Some(epoch.as_str()) {
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
    let last_id = tail.first().map(|e| e.id.clone());
    let mut entries: Vec<Entry> = (tail.iter().rev())
        .filter_map(|raw| decoded(broker, raw))
        .filter(|e| e.epoch == epoch)
        .collect();
    // Keep the contiguous run that ends at the newest.
    if let Some(cut) = (1..entries.len())
        .rev()
        .find(|&i| entries[i].offset != entries[i - 1].offset + 1)
    {
        entries.drain(..cut);
    }
    if broker.tail == 0 {
        entries.clear();
    }
    let newest = entries.first().map_or(offset, |e| e.offset - 1);
    let ended = hub.restart(epoch.clone(), newest);
    let had = cursor.epoch.replace(epoch.as_str().into());
    if had.is_some() || ended > 0 {
        tracing::warn!(
            broker = %broker.name,
            epoch,
            previous = ?had,
            streams_ended = ended,
            "broker history lost (new epoch); ended local streams with UNAVAILABLE so clients resubscribe"
        );
    }
    cursor.newest = newest;
    cursor.last_id = last_id.unwrap_or_else(|| "0-0".to_owned());
    let loaded = entries.len();
    for entry in entries {
        if deliver(broker, (hub, metrics), cursor, entry, None).is_err() {
            break;
        }
    }
    publish_position(broker, cursor);
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

/// Hands one entry of the current epoch to the hub, in order. A live entry
/// (with its stream `id`) continues its sender's trace: `broker.receive`,
/// then this replica's `fanout` under it.
fn deliver(
    broker: &RedisEngine,
    (hub, metrics): (&Hub, &Metrics),
    cursor: &mut Cursor,
    entry: Entry,
    id: Option<&str>,
) -> Result<(), ShuttingDown> {
    if entry.offset <= cursor.newest {
        return Ok(()); // read again after a reconnect
    }
    let epoch = cursor.epoch.clone().unwrap_or_default();
    if entry.offset != cursor.newest + 1 {
        let ended = hub.restart(epoch.to_string(), entry.offset - 1);
        tracing::warn!(
            broker = %broker.name,
            expected = cursor.newest + 1,
            got = entry.offset,
            streams_ended = ended,
            "broker stream trimmed past this replica; history restarts here"
        );
    }
    if id.is_some() {
        // Live entries only: a loaded tail's age is not lag.
        let lag = unix_nanos_now() - entry.send_time;
        broker.metrics.read_lag.record(lag.max(0) as f64 / 1e9);
    }
    let receive = (entry.traceparent.as_deref())
        .and_then(|tp| ReceiveTrace::start(tp, &broker.stream, id?, entry.offset));
    let trace = receive.as_ref().map(|r| r.fanout(broker.deliver_spans_max));
    // Replays continue from this replica's `fanout` when it was recorded.
    let traceparent = (trace.as_ref().and_then(|t| t.traceparent())).or(entry.traceparent);
    let started = Instant::now();
    let published = hub.ingest(
        Message::new(
            Draft {
                author: entry.author,
                text: entry.text,
                traceparent,
            },
            entry.send_time,
            entry.offset,
        ),
        trace.clone(),
    )?;
    if let Some(trace) = &trace {
        trace.set_subscribers(published.delivered_to);
    }
    drop(receive);
    metrics
        .fanout_duration
        .record(started.elapsed().as_secs_f64());
    metrics.history(published.history);
    metrics.disconnected(DisconnectReason::Slow, published.dropped_slow as u64);
    cursor.newest = entry.offset;
    publish_position(broker, cursor);
    Ok(())
}

fn publish_position(broker: &RedisEngine, cursor: &Cursor) {
    let position = Position {
        epoch: cursor.epoch.clone().unwrap_or_default(),
        offset: cursor.newest,
    };
    broker.position.send_replace(position);
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
