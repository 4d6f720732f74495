//! `sendTime` values: nanoseconds since the Unix epoch, UTC.
//!
//! Invariant kept by [`next_send_time`]: every stamp is strictly greater than
//! the previous one and its nanosecond part is never a multiple of 1000. Protobuf
//! JSON (grpcurl, Go, Python) prints 0, 3, 6 or 9 fractional digits depending
//! on trailing zeros; with this rule it always prints 9, so string order equals
//! time order. [`format_rfc3339`] prints the same 9-digit form for HTTP.

use chrono::{DateTime, SecondsFormat};
use prost_types::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Current wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_nanos_now() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The stamp for the next message: `now`, unless that would not be strictly
/// after `last`, nudged by 1 ns off any multiple of 1000.
pub fn next_send_time(last: i128, now: i128) -> i128 {
    let t = now.max(last + 1);
    if t.rem_euclid(1000) == 0 { t + 1 } else { t }
}

/// Converts epoch nanoseconds into a protobuf `Timestamp`.
pub fn to_timestamp(unix_nanos: i128) -> Timestamp {
    Timestamp {
        seconds: unix_nanos.div_euclid(NANOS_PER_SEC) as i64,
        nanos: unix_nanos.rem_euclid(NANOS_PER_SEC) as i32,
    }
}

/// Converts a protobuf `Timestamp` back into epoch nanoseconds.
pub fn from_timestamp(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * NANOS_PER_SEC + i128::from(ts.nanos)
}

/// Seconds of `0001-01-01T00:00:00Z` and `9999-12-31T23:59:59Z`: the range
/// of a valid protobuf `Timestamp`, and of 4-digit RFC 3339 years.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// RFC 3339 UTC with exactly 9 fractional digits and a `Z`, e.g.
/// `2021-09-12T10:25:22.454093428Z`: always 30 characters. `None` if the
/// timestamp is outside protobuf's valid range (years 1..=9999, which chrono
/// would print as `+36812-...`) or its nanos are invalid.
pub fn format_rfc3339(ts: &Timestamp) -> Option<String> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return None;
    }
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    let dt = DateTime::from_timestamp(ts.seconds, nanos)?;
    Some(dt.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_nine_digits() {
        let ts = Timestamp {
            seconds: 1_631_442_322,
            nanos: 454_093_428,
        };
        assert_eq!(
            format_rfc3339(&ts).unwrap(),
            "2021-09-12T10:25:22.454093428Z"
        );
        let zero = Timestamp {
            seconds: 0,
            nanos: 1,
        };
        assert_eq!(
            format_rfc3339(&zero).unwrap(),
            "1970-01-01T00:00:00.000000001Z"
        );
    }

    #[test]
    fn rejects_invalid_nanos() {
        assert!(
            format_rfc3339(&Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_none()
        );
        assert!(
            format_rfc3339(&Timestamp {
                seconds: 0,
                nanos: 1_000_000_000
            })
            .is_none()
        );
    }

    #[test]
    fn rejects_years_outside_1_to_9999() {
        let at = |seconds| format_rfc3339(&Timestamp { seconds, nanos: 1 });
        assert_eq!(at(MIN_SECONDS).unwrap(), "0001-01-01T00:00:00.000000001Z");
        assert_eq!(at(MAX_SECONDS).unwrap(), "9999-12-31T23:59:59.000000001Z");
        // Found by the send_time fuzz target: chrono prints `+36812-02-20T...`.
        assert!(at(MAX_SECONDS + 1).is_none());
        assert!(at(1_099_511_687_424).is_none());
        assert!(at(MIN_SECONDS - 1).is_none());
        assert!(at(i64::MIN).is_none());
    }

    /// Edge nanos: exact seconds, exact micros and millis, the last nano of a second.
    fn edge_now() -> impl Strategy<Value = i128> {
        let base = 1_700_000_000i128 * NANOS_PER_SEC;
        prop_oneof![
            (0i128..1_000_000).prop_map(move |s| base + s * NANOS_PER_SEC),
            (0i128..1_000_000_000).prop_map(move |u| base + u * 1000),
            (0i128..1_000_000).prop_map(move |s| base + s * NANOS_PER_SEC - 1),
            (0i128..1_000_000_000_000).prop_map(move |n| base + n),
        ]
    }

    proptest! {
        #[test]
        fn stamps_increase_and_print_nine_digits(
            start in edge_now(),
            steps in proptest::collection::vec((0i128..3_000, any::<bool>()), 1..64),
        ) {
            let mut last = start - 1;
            let mut last_str = String::new();
            for (delta, clock_back) in steps {
                let now = if clock_back { start - delta } else { start + delta * 1000 };
                let t = next_send_time(last, now);
                prop_assert!(t > last);
                prop_assert!(t.rem_euclid(1000) != 0);
                let ts = to_timestamp(t);
                prop_assert_eq!(from_timestamp(&ts), t);
                let s = format_rfc3339(&ts).unwrap();
                prop_assert_eq!(s.len(), "2021-09-12T10:25:22.454093428Z".len());
                prop_assert!(s > last_str, "{} !> {}", s, last_str);
                last = t;
                last_str = s;
            }
        }
    }
}
