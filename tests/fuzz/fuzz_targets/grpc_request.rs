//! Arbitrary bytes as the gRPC messages the server and client decode.
//!
//! - As a `SendMessageRequest`: decoding never panics; a decoded request
//!   re-encodes to one that decodes equal; the server's validation rejects it
//!   exactly when a field is over its limit, as `INVALID_ARGUMENT` naming the field.
//! - As a `ServerMessageResponse` (what the client reads from its stream): the
//!   client turns it into a buffered message whose JSON, as
//!   `/getAndFlushMessages` prints it, parses back to the same fields, with a
//!   30-character `sendTime`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use messenger_proto::pb::{SendMessageRequest, ServerMessageResponse};
use messenger_server::service::Limits;
use prost::Message;

/// Limits well inside libFuzzer's default 4096-byte inputs, so that both the
/// "text too long" and the "author too long" branches are reached (the
/// defaults, 64 KiB of text, never would be).
const LIMITS: Limits = Limits {
    max_text_bytes: 1024,
    max_author_bytes: 64,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = SendMessageRequest::decode(data) {
        check_request(&req);
    }
    if let Ok(msg) = ServerMessageResponse::decode(data) {
        check_streamed(msg);
    }
});

fn check_request(req: &SendMessageRequest) {
    let again = SendMessageRequest::decode(req.encode_to_vec().as_slice()).expect("re-decodes");
    assert_eq!(&again, req);
    let over = req.author.len() > LIMITS.max_author_bytes || req.text.len() > LIMITS.max_text_bytes;
    match LIMITS.check(req) {
        Ok(()) => assert!(!over, "accepted an oversized request"),
        Err(e) => {
            assert!(over, "rejected a request within limits: {e}");
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            let field = if req.author.len() > LIMITS.max_author_bytes {
                "author"
            } else {
                "text"
            };
            assert!(status.message().contains(field), "{}", status.message());
        }
    }
}

fn check_streamed(msg: ServerMessageResponse) {
    let (author, text) = (msg.author.clone(), msg.text.clone());
    let buffered = messenger_client::backend::to_buffered(msg);
    let json = serde_json::to_string(&buffered).expect("serializes");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["author"].as_str(), Some(author.as_str()));
    assert_eq!(value["text"].as_str(), Some(text.as_str()));
    let send_time = value["sendTime"].as_str().expect("sendTime string");
    assert_eq!(send_time.len(), 30, "{send_time}");
    assert!(send_time.ends_with('Z'), "{send_time}");
    assert_eq!(value.as_object().map(|o| o.len()), Some(3), "{json}");
}
