//! The `sendTime` rules of `messenger_proto::time` on arbitrary clocks and timestamps.
//!
//! - `next_send_time(last, now)` is strictly after `last` and never a multiple
//!   of 1000 ns, so it prints with 9 digits.
//! - `to_timestamp`/`from_timestamp` round-trip, and `to_timestamp` gives valid nanos.
//! - `format_rfc3339` of any timestamp is either `None` or a 30-character
//!   `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` that parses back to the same instant, and
//!   string order equals time order.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use messenger_proto::time::{format_rfc3339, from_timestamp, next_send_time, to_timestamp};
use prost_types::Timestamp;

/// Timestamps whose year has 4 digits (0000..=9999), as far as an `i128` of nanos goes.
const MIN_NANOS: i128 = -62_167_219_200 * 1_000_000_000;
const MAX_NANOS: i128 = 253_402_300_800 * 1_000_000_000 - 1;

fuzz_target!(|input: (i64, i32, i64, i64, u16)| {
    let (seconds, nanos, last, now, step) = input;
    check_format(&Timestamp { seconds, nanos });

    // Any clock, going backwards or not, within the printable range.
    let last = i128::from(last) * 1000 + i128::from(step);
    let now = i128::from(now);
    let t = next_send_time(last, now);
    assert!(t > last && t.rem_euclid(1000) != 0, "{last} {now} -> {t}");
    let ts = to_timestamp(t);
    assert!((0..1_000_000_000).contains(&ts.nanos));
    assert_eq!(from_timestamp(&ts), t);
    if (MIN_NANOS..MAX_NANOS).contains(&t) && (MIN_NANOS..MAX_NANOS).contains(&last) {
        let (a, b) = (format_rfc3339(&to_timestamp(last)), format_rfc3339(&ts));
        if let (Some(a), Some(b)) = (a, b) {
            assert!(a < b, "string order != time order: {a} !< {b}");
        }
    }
});

fn check_format(ts: &Timestamp) {
    let Some(s) = format_rfc3339(ts) else {
        return;
    };
    assert_eq!(s.len(), 30, "{s} from {ts:?}");
    let b = s.as_bytes();
    assert!(b[..4].iter().all(u8::is_ascii_digit), "{s}");
    assert_eq!((b[19], b[29]), (b'.', b'Z'), "{s}");
    assert!(b[20..29].iter().all(u8::is_ascii_digit), "{s}");
    let back = DateTime::parse_from_rfc3339(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(
        (back.timestamp(), back.timestamp_subsec_nanos() as i32),
        (ts.seconds, ts.nanos),
        "{s}"
    );
    assert_eq!(
        from_timestamp(&to_timestamp(from_timestamp(ts))),
        from_timestamp(ts)
    );
}
