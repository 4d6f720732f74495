//! Arbitrary bytes as the gRPC messages the server and client decode, checked
//! against the wire rules of `messenger_proto` alone.
//!
//! - As a `SendMessageRequest`: decoding never panics; a decoded request
//!   re-encodes to one that decodes equal; the field limits
//!   (`messenger_proto::limits`, which the server enforces) reject it exactly
//!   when a field is over its limit, naming that field, its length and limit.
//! - As a `ServerMessageResponse` (what the client reads from its stream):
//!   the `sendTime` the client prints (`time::format_rfc3339`) is either
//!   absent (the client then prints its fixed placeholder) or a 30-character
//!   `...Z` string that parses back to the instant `time::from_timestamp` gives.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use messenger_proto::limits::{Field, Limits};
use messenger_proto::pb::{SendMessageRequest, ServerMessageResponse};
use messenger_proto::time::{format_rfc3339, from_timestamp};
use prost::Message;

/// Limits well inside libFuzzer's default 4096-byte inputs, so that both the
/// "text too long" and the "author too long" branches are reached (the
/// server's defaults, 64 KiB of text, never would be).
const LIMITS: Limits = Limits {
    max_text_bytes: 1024,
    max_author_bytes: 64,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = SendMessageRequest::decode(data) {
        check_request(&req);
    }
    if let Ok(msg) = ServerMessageResponse::decode(data) {
        check_streamed(&msg);
    }
});

fn check_request(req: &SendMessageRequest) {
    let again = SendMessageRequest::decode(req.encode_to_vec().as_slice()).expect("re-decodes");
    assert_eq!(&again, req);
    let author_over = req.author.len() > LIMITS.max_author_bytes;
    let over = author_over || req.text.len() > LIMITS.max_text_bytes;
    match LIMITS.check(req) {
        Ok(()) => assert!(!over, "accepted an oversized request"),
        Err(e) => {
            assert!(over, "rejected a request within limits: {e}");
            let (field, len) = if author_over {
                (Field::Author, req.author.len())
            } else {
                (Field::Text, req.text.len())
            };
            assert_eq!((e.field, e.len, e.max), (field, len, LIMITS.max(field)));
            let message = e.to_string();
            assert!(message.contains(field.name()), "{message}");
        }
    }
}

fn check_streamed(msg: &ServerMessageResponse) {
    let again = ServerMessageResponse::decode(msg.encode_to_vec().as_slice()).expect("re-decodes");
    assert_eq!(&again, msg);
    let Some(ts) = &msg.send_time else {
        return;
    };
    let Some(send_time) = format_rfc3339(ts) else {
        return;
    };
    assert_eq!(send_time.len(), 30, "{send_time}");
    assert!(send_time.ends_with('Z'), "{send_time}");
    let back = DateTime::parse_from_rfc3339(&send_time).expect("parses back");
    let nanos = i128::from(back.timestamp()) * 1_000_000_000
        + i128::from(back.timestamp_subsec_nanos());
    assert_eq!(nanos, from_timestamp(ts), "{send_time}");
}
