//! The server-side scripts, and the only code that writes the stream.
//!
//! Stored state, all strings: the metadata hash `<stream>:meta` holds
//! `epoch`, `offset` (the last given), `sec` and `nsec` (the last `sendTime`:
//! seconds and 9-digit nanoseconds) and `bytes` (the stream's size, see
//! [`super::lua`]). Seconds and nanoseconds stay separate integers because
//! Lua numbers are doubles: 1.7e18 ns is past 2^53 and would lose its last
//! digits.
//!
//! Each entry has the fields `epoch`, `offset`, `sendTime`
//! (`<sec>.<9-digit nsec>`), `author`, `text`, and `traceparent` when the
//! send was traced. Keys go through `KEYS` (the stream and its metadata; on
//! Redis Cluster give the stream a hash tag so both share a slot), values
//! through `ARGV`.
//!
//! Rules, from `messenger_proto::time::next_send_time`: `sendTime` is
//! `max(now, last + 1 ns)`, bumped by 1 ns off a multiple of 1000, so it is
//! strictly increasing across every replica and prints with 9 digits; `last`
//! is the later of the stored one and the caller's newest delivered
//! ([`Seen::send_time`]), so a Redis that lost its data and runs on a clock
//! behind still stamps after everything a client holds. The offset is the
//! last + 1 (1 for the first of an epoch).
//!
//! A new epoch is made from `TIME` (the stream deleted, since its offsets
//! belong to no known epoch) when the metadata is missing (a flushed or
//! restarted Redis without persistence) or rolled back behind the calling
//! replica ([`Seen`]): its offset is behind the caller's newest, or the entry
//! the caller delivered at that offset is gone while older ones remain.
//! Redis came back from an older snapshot (RDB after a crash, AOF
//! `everysec`, a failover to a lagging replica), and reusing those offsets
//! for new messages would let replicas skip them as delivered, or deliver
//! two messages under one offset. A new epoch makes every replica end its
//! streams "history lost" instead. The last `sendTime` is kept, so stamps
//! still increase.
//!
//! The stream is bounded by entries and bytes ([`Bounds`]), trimmed by the
//! publish script before it appends. A Redis at `maxmemory` that refuses an
//! append anyway gets room from [`make_room`]: it trims only entries the
//! calling replica has delivered, and writes nothing Redis would refuse.
//!
//! [`redis::Script`] runs `EVALSHA` and loads the script on `NOSCRIPT` (a
//! restarted Redis forgets scripts), so a script is never missing for long.

use super::lua::{EPOCH, PRELUDE, PROBE, PUBLISH, ROOM};
use redis::aio::ConnectionLike;
use std::sync::{Arc, LazyLock};

static PUBLISH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{PUBLISH}")));
static EPOCH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{EPOCH}")));
static ROOM_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{ROOM}")));
static PROBE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{PROBE}")));

/// What the publish script gave a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: Arc<str>,
    pub offset: u64,
    /// Nanoseconds since the Unix epoch, UTC.
    pub send_time: i128,
    /// The stream entry id.
    pub id: String,
}

/// What the calling replica has delivered, which every script checks the
/// metadata against: a Redis that no longer holds it rolled back (a new
/// epoch), and no stamp is given at or before `send_time`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    /// '' before the replica's first load.
    pub epoch: &'a str,
    /// The newest offset delivered in `epoch`.
    pub offset: u64,
    /// The stream id of the entry at `offset`; '' if unknown.
    pub id: &'a str,
    /// The newest `sendTime` delivered (Unix nanoseconds; 0 for none).
    pub send_time: i128,
}

impl Seen<'_> {
    fn args(&self, call: &mut redis::ScriptInvocation<'_>) {
        let sec = self.send_time.div_euclid(NANOS).max(0);
        let nsec = self.send_time.rem_euclid(NANOS);
        call.arg(self.epoch)
            .arg(self.offset)
            .arg(self.id)
            .arg(sec.to_string())
            .arg(nsec.to_string());
    }
}

const NANOS: i128 = 1_000_000_000;

/// How far the stream may grow: entries and bytes (see [`super::lua`] for
/// how bytes are counted). Trimming starts a little past the bounds (a
/// sixty-fourth of the entries, at least one) and then goes a thirty-second
/// of the bytes below, so it runs once per many appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub entries: usize,
    pub bytes: usize,
}

/// One message to publish: author, text and the traceparent, if traced.
pub type Fields<'a> = (&'a str, &'a str, Option<&'a str>);

/// Most messages one publish script call carries ([`publish_batch`]).
pub const BATCH_MAX: usize = 128;

/// Runs the publish script for one message on `keys` = (stream, meta).
pub async fn publish<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: (&str, &str),
    bounds: Bounds,
    fields: Fields<'_>,
    seen: Seen<'_>,
) -> redis::RedisResult<Stamp> {
    let mut stamps = publish_batch(conn, keys, bounds, &[fields], seen).await?;
    stamps.pop().ok_or_else(|| bad_reply("stamps", "missing"))
}

/// Runs the publish script once for `messages` (1 to [`BATCH_MAX`]), which
/// get consecutive offsets and ascending `sendTime`s in the order given:
/// one round trip and one script run for the whole group (group commit).
/// Atomic like every script: all are appended, or none.
pub async fn publish_batch<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    bounds: Bounds,
    messages: &[Fields<'_>],
    seen: Seen<'_>,
) -> redis::RedisResult<Vec<Stamp>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut call = PUBLISH_SCRIPT.key(stream);
    call.key(meta);
    seen.args(&mut call);
    call.arg(bounds.entries)
        .arg(bounds.bytes)
        .arg((bounds.entries / 64).max(1))
        .arg(bounds.bytes / 32);
    for (author, text, traceparent) in messages {
        call.arg(author)
            .arg(text)
            .arg(traceparent.unwrap_or_default());
    }
    let reply: Vec<String> = call.invoke_async(conn).await?;
    let (head, each) = reply
        .split_at_checked(2)
        .ok_or_else(|| bad_reply("reply", "short"))?;
    if each.len() != 3 * messages.len() {
        return Err(bad_reply("reply", "not one stamp per message"));
    }
    let epoch: Arc<str> = head[0].as_str().into();
    let first: u64 = (head[1].parse()).map_err(|_| bad_reply("offset", "not a number"))?;
    (each.chunks_exact(3).zip(first..))
        .map(|(stamp, offset)| {
            let send_time = super::entry::parse_send_time(&format!("{}.{}", stamp[0], stamp[1]))
                .ok_or_else(|| bad_reply("sendTime", "not a number"))?;
            Ok(Stamp {
                epoch: Arc::clone(&epoch),
                offset,
                send_time,
                id: stamp[2].clone(),
            })
        })
        .collect()
}

fn bad_reply(what: &str, why: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "script reply",
        format!("{what}: {why}"),
    ))
}

fn number(what: &str, s: &str) -> redis::RedisResult<u64> {
    s.parse().map_err(|_| bad_reply(what, "not a number"))
}

/// The stream's epoch and last offset, making a new epoch if the metadata is
/// missing (a fresh or emptied Redis) or rolled back behind `seen`.
pub async fn epoch<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    seen: Seen<'_>,
) -> redis::RedisResult<(String, u64)> {
    let mut call = EPOCH_SCRIPT.key(stream);
    call.key(meta);
    seen.args(&mut call);
    let (epoch, offset): (String, String) = call.invoke_async(conn).await?;
    Ok((epoch, number("offset", &offset)?))
}

/// Makes room in a Redis out of memory: trims the oldest entries the
/// caller delivered (`seen`) until the stream holds at most half its bytes.
/// Returns the stream's bytes before and after (equal: nothing to give).
pub async fn make_room<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    seen: Seen<'_>,
) -> redis::RedisResult<(u64, u64)> {
    let mut call = ROOM_SCRIPT.key(stream);
    call.key(meta);
    seen.args(&mut call);
    call.arg("0.5");
    let (before, after): (String, String) = call.invoke_async(conn).await?;
    Ok((number("bytes", &before)?, number("bytes", &after)?))
}

/// The publish path without an append: `Ok` once Redis would take a
/// publish again, else the error it would refuse one with.
pub async fn probe<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    seen: Seen<'_>,
) -> redis::RedisResult<()> {
    let mut call = PROBE_SCRIPT.key(stream);
    call.key(meta);
    seen.args(&mut call);
    call.invoke_async(conn).await
}
