//! How every error message repeats caller input: the one quote rule of both
//! binaries (gRPC `grpc-message`, reflection `error_response`, HTTP error
//! bodies).
//!
//! Invariants:
//! - a quote shows at most [`QUOTE_MAX_CHARS`] characters of the input,
//!   `{:?}`-escaped (control characters, quotes and backslashes never reach
//!   the message raw), so a quote is a few hundred bytes at most whatever the
//!   input: a caller cannot grow a status past what C-core clients accept
//!   (their metadata hard limit);
//! - a cut quote says so: an ellipsis after the closing quote and the input's
//!   whole length in bytes, `"abc"… (20000 bytes)`;
//! - secrets (bearer tokens, passwords) are never quoted at all, cut or not.

/// The most characters of caller input an error message repeats.
pub const QUOTE_MAX_CHARS: usize = 64;

/// `text` quoted for an error message: see the module docs.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// [`quote`] of bytes that may not be UTF-8 (a header value): invalid
/// sequences show as U+FFFD; the length is of the bytes.
pub fn quote_bytes(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(QUOTE_MAX_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], bytes.len()),
    }
}

/// The longest quote [`quote`] can make, in bytes: 64 characters of up to
/// 10 bytes each once escaped (`\u{10ffff}`), the quotes and the marker.
pub const QUOTE_MAX_BYTES: usize = QUOTE_MAX_CHARS * 10 + 2 + 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_escaped() {
        assert_eq!(quote("abc"), r#""abc""#);
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(quote(""), r#""""#);
        let exact = "x".repeat(QUOTE_MAX_CHARS);
        assert_eq!(quote(&exact), format!("{exact:?}"));
    }

    #[test]
    fn long_input_is_cut_with_an_ellipsis_and_its_length() {
        let long = "s".repeat(20_000);
        let q = quote(&long);
        assert_eq!(
            q,
            format!("\"{}\"… (20000 bytes)", "s".repeat(QUOTE_MAX_CHARS))
        );
        assert!(q.len() <= QUOTE_MAX_BYTES, "{}", q.len());
        let over_by_one = "y".repeat(QUOTE_MAX_CHARS + 1);
        assert!(quote(&over_by_one).ends_with("… (65 bytes)"));
    }

    #[test]
    fn cuts_fall_on_character_boundaries_and_count_bytes() {
        let wide = "é".repeat(100);
        let q = quote(&wide);
        assert!(
            q.starts_with(&format!("\"{}\"", "é".repeat(QUOTE_MAX_CHARS))),
            "{q}"
        );
        assert!(q.ends_with("… (200 bytes)"), "{q}");
        let worst = "\u{1b}".repeat(10_000);
        assert!(quote(&worst).len() <= QUOTE_MAX_BYTES);
    }

    #[test]
    fn bytes_are_quoted_lossily_with_their_own_length() {
        assert_eq!(quote_bytes(b"h\xc3\xa9"), r#""hé""#);
        assert_eq!(quote_bytes(b"a\xff"), "\"a\u{fffd}\"");
        let q = quote_bytes(&[b'h'; 20_000]);
        assert!(
            q.ends_with("… (20000 bytes)") && q.len() <= QUOTE_MAX_BYTES,
            "{q}"
        );
    }
}
