//! The `grpc-message` of every status the port answers, bounded: caller input
//! in a message is repeated only through [`quote`] (at most 64 characters, a
//! cut marked), also where the message is a library's (tonic's unsupported
//! `grpc-encoding`) or the layer's own (an unknown method's path).
//!
//! Invariants:
//! - no `grpc-message` leaving the port is longer than [`MESSAGE_MAX_BYTES`]
//!   before percent-encoding (a longer one is cut, marked like a quote), so a
//!   caller can never grow a trailer past what C-core clients accept: their
//!   metadata hard limit turns the status into `RESOURCE_EXHAUSTED "Stream
//!   removed"`;
//! - only the message changes, never the code;
//! - a message is percent-encoded as PROTOCOL-HTTP2.md says (`%` and every
//!   byte outside printable ASCII), so it decodes to what was written.

use http::HeaderValue;
use messenger_proto::quote::quote;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use std::borrow::Cow;

/// The longest `grpc-message` the port sends, in bytes before encoding.
pub(crate) const MESSAGE_MAX_BYTES: usize = 1024;

/// What PROTOCOL-HTTP2.md percent-encodes in `grpc-message` (non-ASCII
/// bytes are always encoded by [`utf8_percent_encode`]).
const MESSAGE_ENCODE: &AsciiSet = &CONTROLS.add(b'%');

/// tonic's message for a `grpc-encoding` it does not support, around the
/// caller's value.
const UNSUPPORTED_ENCODING: (&str, &str) =
    ("Content is compressed with `", "` which isn't supported");

/// tonic's unsupported-encoding message with the caller's value quoted by
/// the rule; `None` for any other message.
pub(super) fn requote_unsupported_encoding(message: &str) -> Option<String> {
    let value = message
        .strip_prefix(UNSUPPORTED_ENCODING.0)?
        .strip_suffix(UNSUPPORTED_ENCODING.1)?;
    Some(format!(
        "grpc-encoding {} is not supported; send identity (uncompressed) messages",
        quote(value)
    ))
}

/// The message of an unknown method (tonic sends none).
pub(super) fn unknown_method(path: &str) -> String {
    format!(
        "method {} is not served here (`grpcurl -plaintext HOST:PORT list` shows what is)",
        quote(path)
    )
}

/// `message` cut to [`MESSAGE_MAX_BYTES`] on a character boundary, marked
/// with an ellipsis and its whole length.
pub(super) fn bound(message: &str) -> Cow<'_, str> {
    if message.len() <= MESSAGE_MAX_BYTES {
        return Cow::Borrowed(message);
    }
    let mut cut = MESSAGE_MAX_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &message[..cut], message.len()))
}

/// `message`, bounded and percent-encoded as a `grpc-message` value.
pub(super) fn header_value(message: &str) -> HeaderValue {
    let encoded = utf8_percent_encode(&bound(message), MESSAGE_ENCODE).to_string();
    // Percent-encoding leaves only visible ASCII and spaces: always a valid value.
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("invalid message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_unsupported_encoding_is_requoted() {
        // The exact string tonic 0.14 produces (codec/compression.rs): an
        // upgrade that changes it fails here rather than echoing the value.
        let value = "z".repeat(12_000);
        let tonic = format!("Content is compressed with `{value}` which isn't supported");
        let ours = requote_unsupported_encoding(&tonic).expect("tonic's message matched");
        assert!(ours.contains("… (12000 bytes)"), "{ours}");
        assert!(ours.len() < 300, "{}", ours.len());
        assert_eq!(requote_unsupported_encoding("Timeout expired"), None);
    }

    #[test]
    fn an_unknown_method_is_named_by_a_bounded_quote() {
        let short = unknown_method("/a.B/C");
        assert!(
            short.starts_with("method \"/a.B/C\" is not served"),
            "{short}"
        );
        let long = unknown_method(&format!("/{}", "p".repeat(12_000)));
        assert!(
            long.contains("… (12001 bytes)") && long.len() < 300,
            "{long}"
        );
    }

    #[test]
    fn messages_are_bounded_and_encoded_to_decode_back() {
        assert_eq!(bound("short"), "short");
        let long = "é".repeat(MESSAGE_MAX_BYTES);
        let cut = bound(&long);
        assert!(
            cut.ends_with(&format!("… ({} bytes)", 2 * MESSAGE_MAX_BYTES)),
            "{cut}"
        );
        assert!(cut.len() <= MESSAGE_MAX_BYTES + 32);
        let value = header_value("100% sure\né");
        assert_eq!(value, "100%25 sure%0A%C3%A9");
        let decoded = percent_encoding::percent_decode(value.as_bytes()).decode_utf8_lossy();
        assert_eq!(decoded, "100% sure\né");
    }
}
