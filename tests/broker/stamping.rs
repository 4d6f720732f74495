//! The publish script's `sendTime` rule, driven directly against Redis with
//! a frozen `last` in the metadata: `max(now, last + 1 ns)`, nudged off a
//! multiple of 1000, carried across a second boundary; offsets +1; a new
//! epoch when the metadata is gone or behind what the caller delivered; and
//! a batch (group commit) stamped in order under the same rules.

use crate::HEAVY;
use messenger_server::core::broker::entry::decode;
use messenger_server::core::broker::script::{self, Bounds, Seen, Stamp};
use messenger_tests::redis::RedisProc;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

const KEYS: (&str, &str) = ("s", "s:meta");
const SEC: i128 = 1_000_000_000;
const BOUNDS: Bounds = Bounds {
    entries: 1000,
    bytes: 1 << 30,
};
const NONE: Seen<'static> = Seen {
    epoch: "",
    offset: 0,
    id: "",
    send_time: 0,
};

fn seen(epoch: &str, offset: u64) -> Seen<'_> {
    Seen {
        epoch,
        offset,
        ..NONE
    }
}

async fn publish(conn: &mut redis::aio::MultiplexedConnection, text: &str) -> Stamp {
    script::publish(conn, KEYS, BOUNDS, ("a", text, None), NONE)
        .await
        .expect("publish script")
}

/// Freezes `last` at `sec.nsec` (a time in the future, so `now` loses).
async fn freeze(conn: &mut redis::aio::MultiplexedConnection, sec: i64, nsec: &str) {
    let _: () = conn
        .hset_multiple(KEYS.1, &[("sec", sec.to_string().as_str()), ("nsec", nsec)])
        .await
        .unwrap();
}

#[tokio::test]
async fn script_stamps_with_the_nanos_rule() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let mut conn = redis.conn().await;

    let first = publish(&mut conn, "first").await;
    assert_eq!(first.offset, 1, "an epoch starts at offset 1");
    let now = messenger_proto::time::unix_nanos_now();
    assert!(
        (now - first.send_time).abs() < 5 * SEC,
        "stamped from Redis TIME"
    );
    assert_eq!(
        first.send_time.rem_euclid(1000),
        1,
        "TIME has µs: nudged by 1 ns"
    );

    let future = (now / SEC) as i64 + 100;
    let cases = [
        // (frozen nsec, expected sec offset, expected nsec)
        ("000000500", 0, 501),
        ("000000999", 0, 1001), // last + 1 = 1000: a multiple of 1000
        ("999999998", 0, 999_999_999),
        ("999999999", 1, 1), // carry: (sec + 1).000000000, then nudged
    ];
    let mut last_offset = first.offset;
    for (nsec, carry, want) in cases {
        freeze(&mut conn, future, nsec).await;
        let s = publish(&mut conn, nsec).await;
        assert_eq!(
            s.send_time,
            i128::from(future + carry) * SEC + want,
            "last = {future}.{nsec}"
        );
        assert_eq!(s.offset, last_offset + 1);
        assert_eq!(*s.epoch, *first.epoch);
        last_offset = s.offset;
    }

    // Back to the real clock while `last` is ahead: still strictly after it.
    let a = publish(&mut conn, "a").await;
    let b = publish(&mut conn, "b").await;
    assert!(b.send_time > a.send_time && b.send_time.rem_euclid(1000) != 0);

    // The entries hold exactly what the script returned.
    let range: StreamRangeReply = conn.xrange_all(KEYS.0).await.unwrap();
    let entries: Vec<_> = range.ids.iter().map(|e| decode(e).unwrap()).collect();
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[6].send_time, b.send_time);
    assert_eq!(entries[6].offset, b.offset);

    // The metadata vanished (a flush): a new epoch from offset 1, the old stream dropped.
    let _: () = conn.del(KEYS.1).await.unwrap();
    let fresh = publish(&mut conn, "fresh").await;
    assert_ne!(*fresh.epoch, *first.epoch);
    assert_eq!(fresh.offset, 1);
    let len: usize = conn.xlen(KEYS.0).await.unwrap();
    assert_eq!(len, 1, "the stream of the lost epoch was deleted");

    // A caller that delivered up to offset 1 of this epoch: the same epoch
    // continues. One that delivered past the metadata (Redis rolled back to
    // an older snapshot): a new epoch, still stamping after the last sendTime.
    let at = |offset| seen(&fresh.epoch, offset);
    let next = script::publish(&mut conn, KEYS, BOUNDS, ("a", "next", None), at(1)).await;
    let next = next.unwrap();
    assert_eq!((&*next.epoch, next.offset), (&*fresh.epoch, 2));
    let rolled = script::publish(&mut conn, KEYS, BOUNDS, ("a", "rolled", None), at(9)).await;
    let rolled = rolled.unwrap();
    assert_ne!(*rolled.epoch, *fresh.epoch, "behind a replica: a new epoch");
    assert_eq!(rolled.offset, 1);
    assert!(rolled.send_time > next.send_time);
    let len: usize = conn.xlen(KEYS.0).await.unwrap();
    assert_eq!(len, 1, "the rolled-back epoch's stream was deleted");
}

/// One script call for several messages (group commit): consecutive offsets
/// in the order given, strictly ascending stamps that keep the nanos rule
/// even when they outrun the clock (a frozen `last` in the future), and
/// entries holding exactly what was returned, each with its own traceparent.
#[tokio::test]
async fn a_batch_is_stamped_in_order_with_the_nanos_rule() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let mut conn = redis.conn().await;
    let first = publish(&mut conn, "first").await;

    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let batch: Vec<(String, Option<&str>)> = (0..5)
        .map(|i| (format!("m{i}"), (i % 2 == 0).then_some(tp)))
        .collect();
    let fields: Vec<_> = (batch.iter())
        .map(|(text, tp)| ("a", text.as_str(), *tp))
        .collect();
    let future = (messenger_proto::time::unix_nanos_now() / SEC) as i64 + 100;
    // last + 1, + 2, ... crosses 999_999_999 and lands on multiples of 1000.
    freeze(&mut conn, future, "999999997").await;
    let stamps = script::publish_batch(&mut conn, KEYS, BOUNDS, &fields, NONE)
        .await
        .expect("publish script");
    let got: Vec<(u64, i128)> = stamps.iter().map(|s| (s.offset, s.send_time)).collect();
    let base = i128::from(future) * SEC;
    let want = [
        (2, base + 999_999_998),
        (3, base + 999_999_999),
        (4, base + SEC + 1), // carried to .000000000, nudged off the multiple of 1000
        (5, base + SEC + 2),
        (6, base + SEC + 3),
    ];
    assert_eq!(got, want);
    assert!(stamps.iter().all(|s| *s.epoch == *first.epoch));

    let range: StreamRangeReply = conn.xrange_all(KEYS.0).await.unwrap();
    let entries: Vec<_> = range.ids.iter().map(|e| decode(e).unwrap()).collect();
    assert_eq!(entries.len(), 6);
    for ((entry, stamp), (text, tp)) in entries[1..].iter().zip(&stamps).zip(&batch) {
        assert_eq!(
            (entry.offset, entry.send_time),
            (stamp.offset, stamp.send_time)
        );
        assert_eq!(&entry.text, text);
        assert_eq!(entry.traceparent.as_deref(), *tp);
    }
    assert_eq!(range.ids[5].id, stamps[4].id);

    // The metadata holds the batch's last: the next single send follows it.
    let next = publish(&mut conn, "next").await;
    assert_eq!(next.offset, 7);
    assert_eq!(next.send_time, base + SEC + 4);
}

/// The caller's newest delivered `sendTime` is a floor: a Redis that lost
/// its data (no metadata) and whose clock is an hour behind it still stamps
/// after it. And a caller whose newest entry is gone while older ones
/// remain (Redis rolled back, then others wrote past it) gets a new epoch,
/// even though the stored offset is ahead of it.
#[tokio::test]
async fn the_callers_newest_is_a_floor_and_its_lost_entry_a_rollback() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let mut conn = redis.conn().await;

    let future = messenger_proto::time::unix_nanos_now() + 3600 * SEC;
    let floor = Seen {
        send_time: future,
        ..NONE
    };
    let first = script::publish(&mut conn, KEYS, BOUNDS, ("a", "x", None), floor)
        .await
        .unwrap();
    assert!(first.send_time > future, "{} <= {future}", first.send_time);

    // Entries 1-3; a replica delivered 3, then Redis lost 3 and someone
    // appended 3' and 4: the stored offset (4) is ahead of the caller, but
    // its entry 3 is gone.
    let epoch = first.epoch.clone();
    let _ = publish(&mut conn, "2").await;
    let third = publish(&mut conn, "3").await;
    let _: () = conn.xdel(KEYS.0, &[&third.id]).await.unwrap();
    let _: () = conn.hset(KEYS.1, "offset", "2").await.unwrap();
    let _ = publish(&mut conn, "3'").await;
    let fourth = publish(&mut conn, "4").await;
    assert_eq!((&fourth.epoch, fourth.offset), (&epoch, 4));
    let delivered = Seen {
        id: &third.id,
        ..seen(&epoch, 3)
    };
    let (now, offset) = script::epoch(&mut conn, KEYS, delivered).await.unwrap();
    assert_ne!(
        now, *epoch,
        "another entry at a delivered offset: a new epoch"
    );
    assert_eq!(offset, 0);

    // Trimmed (older than the stream's first entry) is not a rollback.
    let kept = publish(&mut conn, "kept").await;
    let gone = Seen {
        id: "1-0",
        ..seen(&kept.epoch, kept.offset)
    };
    let (same, _) = script::epoch(&mut conn, KEYS, gone).await.unwrap();
    assert_eq!(same, *kept.epoch);
}

/// The stream is bounded by bytes as well as entries: its size is kept in
/// the metadata, and the oldest entries go once it passes the byte bound
/// (with a thirty-second of slack), never the newest.
#[tokio::test]
async fn the_stream_is_bounded_by_bytes() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let mut conn = redis.conn().await;
    let bounds = Bounds {
        entries: 1000,
        bytes: 64 * 1024,
    };
    let text = "x".repeat(4096);
    for _ in 0..100 {
        script::publish(&mut conn, KEYS, bounds, ("a", &text, None), NONE)
            .await
            .unwrap();
    }
    let len: usize = conn.xlen(KEYS.0).await.unwrap();
    let bytes: usize = conn.hget(KEYS.1, "bytes").await.unwrap();
    let range: StreamRangeReply = conn.xrange_all(KEYS.0).await.unwrap();
    let counted: usize = (range.ids.iter().flat_map(|e| e.map.iter()))
        .map(|(k, v)| match v {
            redis::Value::BulkString(b) => k.len() + b.len(),
            _ => k.len(),
        })
        .sum();
    assert_eq!(bytes, counted, "the metadata counts the stream's bytes");
    assert!(bytes <= bounds.bytes, "{bytes} bytes in {len} entries");
    assert!(
        len >= 14,
        "{len} entries: trimmed to the bound, not emptied"
    );
    let last = decode(range.ids.last().unwrap()).unwrap();
    assert_eq!(last.offset, 100, "the newest stays");
}
