//! The text of a measured message: publisher id and sequence number in a
//! fixed-width header (`PPPP-SSSSSSSSSSSS`), padded with `x` to the payload
//! size, so a subscriber parses it with a few integer operations.

/// Length of the id header; the smallest payload.
pub(crate) const HEADER_LEN: usize = 17;

/// Writes message `seq` of `publisher`, `payload` bytes long (at least
/// [`HEADER_LEN`]), into `out`.
pub(crate) fn encode(publisher: usize, seq: u64, payload: usize, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(
        out,
        "{:04}-{:012}",
        publisher % 10_000,
        seq % 1_000_000_000_000
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
    if b.len() < HEADER_LEN || b[4] != b'-' {
        return None;
    }
    Some((digits(&b[..4])? as usize, digits(&b[5..HEADER_LEN])?))
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
        encode(7, 123_456, 64, &mut s);
        assert_eq!(s.len(), 64);
        assert_eq!(decode(&s), Some((7, 123_456)));
        encode(3, 1, 0, &mut s);
        assert_eq!(s, "0003-000000000001");
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("000a-000000000001"), None);
    }
}
