//! The text of a measured message: publisher id, sequence number and the
//! publisher's send stamp in a fixed-width header
//! (`PPPP-SSSSSSSSSSSS-TTTTTTTTTTTTTTTT`), padded with `x` to the payload
//! size, so a subscriber parses it with a few integer operations.
//!
//! The stamp is [`clock_nanos`]: nanoseconds on the bench process's own
//! monotonic clock, read just before the publisher's `SendMessage` call.
//! Publishers and subscribers of one `fanout` run share the process, so
//! receipt minus stamp is the publisher's send to the subscriber's receipt,
//! the same interval `messenger-bench-nats` measures for nats-server.

use std::sync::OnceLock;
use std::time::Instant;

/// Length of the header; the smallest payload.
pub(crate) const HEADER_LEN: usize = 34;
/// Length of the id part (`PPPP-SSSSSSSSSSSS`).
const ID_LEN: usize = 17;

/// Nanoseconds since the first call in this process, on the monotonic clock.
pub(crate) fn clock_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Writes message `seq` of `publisher`, stamped `sent` ([`clock_nanos`]),
/// `payload` bytes long (at least [`HEADER_LEN`]), into `out`.
pub(crate) fn encode(publisher: usize, seq: u64, sent: u64, payload: usize, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(
        out,
        "{:04}-{:012}-{:016}",
        publisher % 10_000,
        seq % 1_000_000_000_000,
        sent % 10_000_000_000_000_000
    );
    while out.len() < payload {
        out.push('x');
    }
}

/// (publisher, seq) from a text written by [`encode`].
pub(crate) fn decode(text: &str) -> Option<(usize, u64)> {
    decode_bytes(text.as_bytes())
}

/// [`decode`] over the text's UTF-8 bytes (no UTF-8 check needed: the
/// header is ASCII digits).
pub(crate) fn decode_bytes(b: &[u8]) -> Option<(usize, u64)> {
    if b.len() < ID_LEN || b[4] != b'-' {
        return None;
    }
    Some((digits(&b[..4])? as usize, digits(&b[5..ID_LEN])?))
}

/// The send stamp of a text written by [`encode`].
pub(crate) fn sent_bytes(b: &[u8]) -> Option<u64> {
    if b.len() < HEADER_LEN || b[ID_LEN] != b'-' {
        return None;
    }
    digits(&b[ID_LEN + 1..HEADER_LEN])
}

fn digits(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let mut s = String::new();
        encode(7, 123_456, 987_654_321, 64, &mut s);
        assert_eq!(s.len(), 64);
        assert_eq!(decode(&s), Some((7, 123_456)));
        assert_eq!(sent_bytes(s.as_bytes()), Some(987_654_321));
        encode(3, 1, 2, 0, &mut s);
        assert_eq!(s, "0003-000000000001-0000000000000002");
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("000a-000000000001"), None);
        assert_eq!(sent_bytes(b"0003-000000000001"), None);
        assert_eq!(sent_bytes(b"0003-000000000001-00000000000x0002"), None);
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let a = clock_nanos();
        assert!(clock_nanos() >= a);
    }
}
