//! The server-side scripts, and the only code that writes the stream.
//!
//! Stored state, all strings: the metadata hash `<stream>:meta` holds
//! `epoch`, `offset` (the last given), `sec` and `nsec` (the last `sendTime`:
//! seconds and 9-digit nanoseconds). Seconds and nanoseconds stay separate
//! integers because Lua numbers are doubles: 1.7e18 ns is past 2^53 and would
//! lose its last digits.
//!
//! Each entry has the fields `epoch`, `offset`, `sendTime`
//! (`<sec>.<9-digit nsec>`), `author`, `text`, and `traceparent` when the
//! send was traced. Keys go through `KEYS` (the stream and its metadata; on
//! Redis Cluster give the stream a hash tag so both share a slot), values
//! through `ARGV`.
//!
//! Rules, from `messenger_proto::time::next_send_time`: `sendTime` is
//! `max(now, last + 1 ns)`, bumped by 1 ns off a multiple of 1000, so it is
//! strictly increasing across every replica and prints with 9 digits. The
//! offset is the last + 1 (1 for the first of an epoch). A missing metadata
//! key means history was lost (a flushed or restarted Redis without
//! persistence): a new epoch is made from `TIME`, and a stream left without
//! its metadata is deleted, since its offsets belong to no known epoch.
//! So is metadata whose offset is behind what the calling replica already
//! delivered in that epoch (`seen`): Redis came back from an older snapshot
//! (RDB after a crash, AOF `everysec`, a failover to a lagging replica), and
//! reusing those offsets for new messages would let replicas skip them as
//! delivered. A new epoch makes every replica end its streams "history
//! lost" instead. The last `sendTime` is kept, so stamps still increase.
//!
//! [`redis::Script`] runs `EVALSHA` and loads the script on `NOSCRIPT` (a
//! restarted Redis forgets scripts), so a script is never missing for long.

use redis::aio::ConnectionLike;
use std::sync::{Arc, LazyLock};

/// Reads the metadata, making a new epoch when it is missing or behind what
/// the calling replica has already delivered in the same epoch (`seen`:
/// its epoch, '' for none, and newest offset); defines
/// `meta(stream, meta_key, seen_epoch, seen_offset)` -> epoch, offset, sec, nsec.
const PRELUDE: &str = r"
local function meta(stream, key, seen_epoch, seen_offset)
  local m = redis.call('HMGET', key, 'epoch', 'offset', 'sec', 'nsec')
  if m[1] and not (m[1] == seen_epoch and tonumber(m[2]) < tonumber(seen_offset)) then
    return m[1], tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  end
  local t = redis.call('TIME')
  local epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  if epoch == m[1] then
    epoch = epoch .. '1'
  end
  redis.call('DEL', stream)
  local sec, nsec = m[3] or '0', m[4] or '0'
  redis.call('HSET', key, 'epoch', epoch, 'offset', '0', 'sec', sec, 'nsec', nsec)
  return epoch, 0, tonumber(sec), tonumber(nsec)
end
";

/// KEYS: stream, meta. ARGV: max length, seen epoch, seen offset, then
/// author, text and traceparent ('' for none) of each message, in order.
/// Returns {epoch, offset of the first, then sec, nsec (9 digits) and entry
/// id of each}. One `TIME` serves the whole batch: each stamp is
/// `max(now, previous + 1 ns)`, so a batch's stamps are consecutive
/// nanoseconds when they outrun the clock. Only the last `XADD` trims.
const PUBLISH: &str = r"
local epoch, offset, s, ns = meta(KEYS[1], KEYS[2], ARGV[2], ARGV[3])
local t = redis.call('TIME')
local now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000
local n = (#ARGV - 3) / 3
local reply = {epoch, string.format('%d', offset + 1)}
local sec, nsec, off
for i = 1, n do
  if now_s > s or (now_s == s and now_ns > ns) then
    s, ns = now_s, now_ns
  else
    ns = ns + 1
  end
  if ns >= 1000000000 then
    s, ns = s + 1, ns - 1000000000
  end
  if ns % 1000 == 0 then
    ns = ns + 1
  end
  off = string.format('%d', offset + i)
  sec, nsec = string.format('%d', s), string.format('%09d', ns)
  local a = 3 * i + 1
  local fields = {'epoch', epoch, 'offset', off, 'sendTime', sec .. '.' .. nsec,
    'author', ARGV[a], 'text', ARGV[a + 1]}
  if ARGV[a + 2] ~= '' then
    fields[#fields + 1] = 'traceparent'
    fields[#fields + 1] = ARGV[a + 2]
  end
  local id
  if i == n then
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
  else
    id = redis.call('XADD', KEYS[1], '*', unpack(fields))
  end
  reply[#reply + 1] = sec
  reply[#reply + 1] = nsec
  reply[#reply + 1] = id
end
redis.call('HSET', KEYS[2], 'offset', off, 'sec', sec, 'nsec', nsec)
return reply
";

/// KEYS: stream, meta. ARGV: seen epoch, seen offset. Returns {epoch,
/// offset}, making a new epoch if missing or rolled back.
const EPOCH: &str = r"
local epoch, offset = meta(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {epoch, string.format('%d', offset)}
";

static PUBLISH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{PUBLISH}")));
static EPOCH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{EPOCH}")));

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

/// One message to publish: author, text and the traceparent, if traced.
pub type Fields<'a> = (&'a str, &'a str, Option<&'a str>);

/// Most messages one publish script call carries ([`publish_batch`]).
pub const BATCH_MAX: usize = 128;

/// Runs the publish script for one message on `keys` = (stream, meta).
pub async fn publish<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: (&str, &str),
    max_len: usize,
    fields: Fields<'_>,
    seen: (&str, u64),
) -> redis::RedisResult<Stamp> {
    let mut stamps = publish_batch(conn, keys, max_len, &[fields], seen).await?;
    stamps.pop().ok_or_else(|| bad_reply("stamps", "missing"))
}

/// Runs the publish script once for `messages` (1 to [`BATCH_MAX`]), which
/// get consecutive offsets and ascending `sendTime`s in the order given:
/// one round trip and one script run for the whole group (group commit).
/// Atomic like every script: all are appended, or none.
pub async fn publish_batch<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    max_len: usize,
    messages: &[Fields<'_>],
    seen: (&str, u64),
) -> redis::RedisResult<Vec<Stamp>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut call = PUBLISH_SCRIPT.key(stream);
    call.key(meta).arg(max_len).arg(seen.0).arg(seen.1);
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
        "publish script reply",
        format!("{what}: {why}"),
    ))
}

/// The stream's epoch and last offset, making a new epoch if the metadata is
/// missing (a fresh or emptied Redis) or behind `seen` (the caller's epoch,
/// '' for none, and the newest offset it delivered).
pub async fn epoch<C: ConnectionLike + Send>(
    conn: &mut C,
    (stream, meta): (&str, &str),
    seen: (&str, u64),
) -> redis::RedisResult<(String, u64)> {
    let (epoch, offset): (String, String) = EPOCH_SCRIPT
        .key(stream)
        .key(meta)
        .arg(seen.0)
        .arg(seen.1)
        .invoke_async(conn)
        .await?;
    let offset = offset.parse().map_err(|_| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "epoch script reply",
            format!("offset {offset:?} is not a number"),
        ))
    })?;
    Ok((epoch, offset))
}
