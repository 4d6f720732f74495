//! The publish script's `sendTime` rule, driven directly against Redis with
//! a frozen `last` in the metadata: `max(now, last + 1 ns)`, nudged off a
//! multiple of 1000, carried across a second boundary; offsets +1; a new
//! epoch when the metadata is gone or behind what the caller delivered.

use crate::HEAVY;
use messenger_server::engine::redis::entry::decode;
use messenger_server::engine::redis::script::{self, Stamp};
use messenger_tests::redis::RedisProc;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

const KEYS: (&str, &str) = ("s", "s:meta");
const SEC: i128 = 1_000_000_000;

async fn publish(conn: &mut redis::aio::MultiplexedConnection, text: &str) -> Stamp {
    script::publish(conn, KEYS, 1000, ("a", text, None), ("", 0))
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
    let seen = |offset| (&*fresh.epoch, offset);
    let next = script::publish(&mut conn, KEYS, 1000, ("a", "next", None), seen(1)).await;
    let next = next.unwrap();
    assert_eq!((&*next.epoch, next.offset), (&*fresh.epoch, 2));
    let rolled = script::publish(&mut conn, KEYS, 1000, ("a", "rolled", None), seen(9)).await;
    let rolled = rolled.unwrap();
    assert_ne!(*rolled.epoch, *fresh.epoch, "behind a replica: a new epoch");
    assert_eq!(rolled.offset, 1);
    assert!(rolled.send_time > next.send_time);
    let len: usize = conn.xlen(KEYS.0).await.unwrap();
    assert_eq!(len, 1, "the rolled-back epoch's stream was deleted");
}
