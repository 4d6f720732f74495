//! The Lua source of the server-side scripts ([`super::script`] runs them
//! and documents the stored state and the rules).
//!
//! Shared header of every script's `ARGV` ([`PRELUDE`]'s `seen()`): the
//! calling replica's epoch ('' for none), the newest offset it delivered,
//! that entry's stream id ('' if unknown) and its newest delivered
//! `sendTime` as seconds and 9-digit nanoseconds ('0' '0' for none).
//! Messages or bounds follow it.
//!
//! Byte accounting: `<stream>:meta` field `bytes` is the sum over the
//! stream's entries of the lengths of their field names and values, kept by
//! the scripts as they append and trim (a stream from before the field
//! existed starts at 0 and is clamped at 0, so the bound is loose until its
//! old entries are gone).

/// Defines `meta()` (the metadata, making a new epoch when it is missing or
/// rolled back behind the caller) and `trim()` (the stream's bounds).
pub(super) const PRELUDE: &str = r"
local SEEN = 5
local seen_epoch, seen_offset, seen_id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local floor_s, floor_ns = tonumber(ARGV[4]), tonumber(ARGV[5])

local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

-- True when the stream no longer holds what the caller delivered: the
-- stored offset is behind it, or its newest entry is gone while older ones
-- (or none at all) remain. An entry older than the stream's first was
-- trimmed, which says nothing.
local function rolled_back(stream, offset)
  if offset < seen_offset then return true end
  if seen_id == '' then return false end
  if #redis.call('XRANGE', stream, seen_id, seen_id) > 0 then return false end
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  return first == nil or id_less(first[1], seen_id)
end

local function meta(stream, key)
  local m = redis.call('HMGET', key, 'epoch', 'offset', 'sec', 'nsec')
  if m[1] and not (m[1] == seen_epoch and rolled_back(stream, tonumber(m[2]))) then
    return m[1], tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  end
  local t = redis.call('TIME')
  local epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  if epoch == m[1] then
    epoch = epoch .. '1'
  end
  redis.call('DEL', stream)
  local sec, nsec = m[3] or '0', m[4] or '0'
  redis.call('HSET', key, 'epoch', epoch, 'offset', '0', 'sec', sec, 'nsec', nsec, 'bytes', '0')
  return epoch, 0, tonumber(sec), tonumber(nsec)
end

local function entry_bytes(fields)
  local n = 0
  for i = 1, #fields do
    n = n + #fields[i]
  end
  return n
end

-- Removes the oldest entries while the stream, with `add_len` entries of
-- `add_bytes` more, is over `max_len` entries or `max_bytes` bytes; never
-- an entry at an offset above `upto`, and never the newest one. Trimming
-- starts only past `max_len + slack_len` entries or `max_bytes`, and then
-- goes `slack_bytes` below the byte bound, so it runs once per many
-- appends. Returns the stream's bytes before and after.
local function trim(stream, key, max_len, max_bytes, add_len, add_bytes, upto, slack_len, slack_bytes)
  local before = math.max(tonumber(redis.call('HGET', key, 'bytes') or '0'), 0)
  local bytes = before
  local len = redis.call('XLEN', stream)
  if len + add_len <= max_len + slack_len and bytes + add_bytes <= max_bytes then
    return before, before
  end
  local keep_bytes = max_bytes - slack_bytes
  local cursor, kept = '-', nil
  while not kept do
    local page = redis.call('XRANGE', stream, cursor, '+', 'COUNT', 100)
    if #page == 0 then break end
    for _, e in ipairs(page) do
      local over = len + add_len > max_len or bytes + add_bytes > keep_bytes
      local offset
      for i = 1, #e[2], 2 do
        if e[2][i] == 'offset' then offset = tonumber(e[2][i + 1]) end
      end
      if not over or len <= 1 or (offset and offset > upto) then
        kept = e[1]
        break
      end
      bytes = bytes - entry_bytes(e[2])
      len = len - 1
    end
    cursor = '(' .. page[#page][1]
  end
  if kept then
    redis.call('XTRIM', stream, 'MINID', kept)
  end
  bytes = math.max(bytes, 0)
  redis.call('HSET', key, 'bytes', string.format('%d', bytes))
  return before, bytes
end
";

/// ARGV: the seen header, then max entries, max bytes, trim slack in
/// entries and bytes, then author, text and traceparent ('' for none) of
/// each message, in order. KEYS: stream, meta. Returns {epoch, offset of
/// the first, then sec, nsec (9 digits) and entry id of each}. One `TIME`
/// serves the whole batch: each stamp is `max(now, previous + 1 ns)`, the
/// previous starting at the later of the stored and the caller's `sendTime`.
/// The trim runs before the appends, so a Redis at `maxmemory` refuses
/// nothing while the stream has room to give.
pub(super) const PUBLISH: &str = r"
local max_len, max_bytes = tonumber(ARGV[SEEN + 1]), tonumber(ARGV[SEEN + 2])
local slack_len, slack_bytes = tonumber(ARGV[SEEN + 3]), tonumber(ARGV[SEEN + 4])
local first_arg = SEEN + 5
local epoch, offset, s, ns = meta(KEYS[1], KEYS[2])
if floor_s > s or (floor_s == s and floor_ns > ns) then
  s, ns = floor_s, floor_ns
end
local n = (#ARGV - first_arg + 1) / 3
local add_bytes = 0
for i = 1, n do
  local a = first_arg + 3 * (i - 1)
  -- The fields below: names, epoch, offset and sendTime (at most 50 bytes).
  add_bytes = add_bytes + 42 + #epoch + 30 + #ARGV[a] + #ARGV[a + 1]
  if ARGV[a + 2] ~= '' then add_bytes = add_bytes + 11 + #ARGV[a + 2] end
end
local _, bytes = trim(KEYS[1], KEYS[2], max_len, max_bytes, n, add_bytes, offset, slack_len, slack_bytes)
local t = redis.call('TIME')
local now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000
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
  local a = first_arg + 3 * (i - 1)
  local fields = {'epoch', epoch, 'offset', off, 'sendTime', sec .. '.' .. nsec,
    'author', ARGV[a], 'text', ARGV[a + 1]}
  if ARGV[a + 2] ~= '' then
    fields[#fields + 1] = 'traceparent'
    fields[#fields + 1] = ARGV[a + 2]
  end
  bytes = bytes + entry_bytes(fields)
  reply[#reply + 1] = sec
  reply[#reply + 1] = nsec
  reply[#reply + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
redis.call('HSET', KEYS[2], 'offset', off, 'sec', sec, 'nsec', nsec, 'bytes', string.format('%d', bytes))
return reply
";

/// ARGV: the seen header. Returns {epoch, offset}, making a new epoch if
/// missing or rolled back.
pub(super) const EPOCH: &str = r"
local epoch, offset = meta(KEYS[1], KEYS[2])
return {epoch, string.format('%d', offset)}
";

/// ARGV: the seen header, then the byte share to keep (e.g. 0.5). Makes
/// room in a Redis out of memory: trims the oldest entries the caller has
/// delivered until the stream holds at most that share of its bytes.
/// Returns {bytes before, bytes after}; trims only (no write Redis refuses
/// at `maxmemory`).
pub(super) const ROOM: &str = r"
local epoch, offset = meta(KEYS[1], KEYS[2])
if epoch ~= seen_epoch then
  return {'0', '0'}
end
local bytes = math.max(tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0'), 0)
local keep = math.floor(bytes * tonumber(ARGV[SEEN + 1]))
local before, after = trim(KEYS[1], KEYS[2], 1e15, keep, 0, 0, seen_offset, 0, 0)
return {string.format('%d', before), string.format('%d', after)}
";

/// ARGV: the seen header. The write path of a publish without its append:
/// the metadata, the stream's type (`WRONGTYPE`) and one rewrite of the
/// metadata, which Redis refuses exactly as it would refuse a publish
/// (`OOM`, `READONLY`, `MISCONF`, `NOPERM`). Returns 1.
pub(super) const PROBE: &str = r"
local epoch, offset = meta(KEYS[1], KEYS[2])
redis.call('XLEN', KEYS[1])
redis.call('HSET', KEYS[2], 'offset', string.format('%d', offset))
return 1
";
