//! Each row of grpc/grpc `doc/statuscodes.md` that the server can produce on
//! its own (transport and codec, not the application), answered with the
//! table's code. The malformed-frame rows are in `frames`; shutting down
//! (UNAVAILABLE) in `drain`; out of resources (RESOURCE_EXHAUSTED) in `limits`.

use crate::HEAVY;
use messenger_proto::pb::SendMessageRequest;
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame, grpc_status};
use messenger_tests::*;
use std::time::{Duration, Instant};
use tonic::Code;

const GRPC: &str = "application/grpc";
const READ_PATH: &str = "/mes_grpc.MessengerServer/ReadMessages";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_receive_limit_is_resource_exhausted() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start().await;
    // The field report: a 3 MiB `text` through a generated client.
    let request = SendMessageRequest {
        author: "big".into(),
        text: "x".repeat(3 * 1024 * 1024),
    };
    let status = server
        .grpc()
        .await
        .send_message(request)
        .await
        .expect_err("over the limit");
    println!("3 MiB text: {:?} {:?}", status.code(), status.message());
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
}

/// A row of the table: what, path, extra headers, body, expected code.
type Row = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    Code,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_statuses_follow_the_table() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start().await;
    let mut raw = Raw::connect(server.addr).await;
    let valid = encoded_request(b"hello");
    let one = frame(false, valid.len() as u32, &valid);
    let empty = frame(false, 0, &[]);
    let rows: Vec<Row> = vec![
        (
            "method not found",
            "/mes_grpc.MessengerServer/Nope",
            vec![],
            one.clone(),
            Code::Unimplemented,
        ),
        (
            "service not found",
            "/nope.Nope/SendMessage",
            vec![],
            one.clone(),
            Code::Unimplemented,
        ),
        (
            "compression not supported by the server",
            SEND_PATH,
            vec![("grpc-encoding", "gzip")],
            frame(true, valid.len() as u32, &valid),
            Code::Unimplemented,
        ),
        (
            "request cardinality: two requests to a server-streaming method",
            READ_PATH,
            vec![],
            [empty.clone(), empty.clone()].concat(),
            Code::Unimplemented,
        ),
        (
            "request cardinality: no request to a unary health check",
            "/grpc.health.v1.Health/Check",
            vec![],
            Vec::new(),
            Code::Unimplemented,
        ),
    ];
    for (row, path, headers, body, expected) in rows {
        let (code, message) = raw.call_with(path, GRPC, &headers, body).await;
        println!("{row}: grpc-status {code} {message:?}");
        assert_eq!(code, expected as i32, "{row}: {message}");
        assert!(!message.is_empty(), "{row}: a reason is given");
    }
    // The call still works after all of that, on the same connection.
    let (code, message) = raw.call(SEND_PATH, GRPC, one).await;
    assert_eq!(code, 0, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_deadline_exceeded_for_calls_and_streams() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start().await;
    let mut raw = Raw::connect(server.addr).await;
    let timeout = [("grpc-timeout", "300m")];
    // A unary call whose body never ends (tonic alone answers CANCELLED).
    let start = Instant::now();
    let (response, _held_open) = raw.open_with(SEND_PATH, GRPC, &timeout).await;
    let (code, message) = grpc_status(response).await;
    let unary_took = start.elapsed();
    assert_eq!(code, Code::DeadlineExceeded as i32, "unary: {message}");
    // A ReadMessages stream, which would otherwise run forever.
    let start = Instant::now();
    let (response, mut send) = raw.open_with(READ_PATH, GRPC, &timeout).await;
    send.send_data(frame(false, 0, &[]).into(), true).unwrap();
    let (code, message) = grpc_status(response).await;
    let stream_took = start.elapsed();
    assert_eq!(code, Code::DeadlineExceeded as i32, "stream: {message}");
    println!(
        "grpc-timeout 300m: unary DEADLINE_EXCEEDED after {unary_took:?}, \
         stream after {stream_took:?} ({message:?})"
    );
    for took in [unary_took, stream_took] {
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    server.wait_subscribers(0).await;
}

/// A `grpc-timeout` that is not 1–8 digits and one unit (PROTOCOL-HTTP2.md),
/// or that came twice, is INTERNAL naming it, as grpc-go answers; tonic alone
/// ran the call with no deadline. A zero one (`0n`, grpc-java's form of a
/// passed deadline) is DEADLINE_EXCEEDED. Neither call runs: no message of
/// theirs reaches a subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_passed_grpc_timeout_is_refused_before_the_call_runs() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start().await;
    let mut subscriber = server.subscribe().await;
    let mut raw = Raw::connect(server.addr).await;
    let refused = encoded_request(b"refused");
    let refused = frame(false, refused.len() as u32, &refused);
    for value in ["5s", "123456789S", "S", "1.5S", "-1S", "5 S"] {
        let headers = [("grpc-timeout", value)];
        let (code, message) = raw
            .call_with(SEND_PATH, GRPC, &headers, refused.clone())
            .await;
        println!("grpc-timeout {value:?}: grpc-status {code} {message:?}");
        assert_eq!(code, Code::Internal as i32, "{value}: {message}");
        assert!(
            message.starts_with(&format!("malformed grpc-timeout \"{value}\"")),
            "{value}: {message}"
        );
    }
    let twice = [("grpc-timeout", "1S"), ("grpc-timeout", "2S")];
    let (code, message) = raw
        .call_with(SEND_PATH, GRPC, &twice, refused.clone())
        .await;
    assert_eq!(code, Code::Internal as i32, "twice: {message}");
    assert_eq!(message, "grpc-timeout was sent 2 times; send it once");
    let passed = [("grpc-timeout", "0n")];
    let (code, message) = raw.call_with(SEND_PATH, GRPC, &passed, refused).await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "0n: {message}");
    // The same connection still serves a good deadline, and that message is
    // the first the subscriber gets.
    let kept = encoded_request(b"kept");
    let kept = frame(false, kept.len() as u32, &kept);
    let (code, message) = raw
        .call_with(SEND_PATH, GRPC, &[("grpc-timeout", "5S")], kept)
        .await;
    assert_eq!(code, 0, "{message}");
    let first = read_n(&mut subscriber, 1).await;
    assert_eq!(first[0].text, "kept");
}

/// A request that is not gRPC's (PROTOCOL-HTTP2.md, "Requests") is refused as
/// grpc-go refuses it, before any call runs: a `GET` (curl's default) is 405
/// `INTERNAL` with `allow: POST`, and a content-type that is not
/// `application/grpc…` is 415 `INVALID_ARGUMENT`, each naming what came.
/// tonic ran both as calls and answered HTTP 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_grpc_is_405_or_415_naming_it() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start().await;
    let mut raw = Raw::connect(server.addr).await;
    let rows = [
        (
            "GET",
            READ_PATH,
            Some(GRPC),
            405,
            Code::Internal,
            "method \"GET\"",
        ),
        (
            "PUT",
            SEND_PATH,
            Some(GRPC),
            405,
            Code::Internal,
            "method \"PUT\"",
        ),
        (
            "POST",
            READ_PATH,
            None,
            415,
            Code::InvalidArgument,
            "content-type none",
        ),
        (
            "POST",
            SEND_PATH,
            Some("application/json"),
            415,
            Code::InvalidArgument,
            "content-type \"application/json\"",
        ),
        (
            "POST",
            "/grpc.health.v1.Health/Check",
            Some("application/grpc-web"),
            415,
            Code::InvalidArgument,
            "content-type \"application/grpc-web\"",
        ),
    ];
    for (method, path, content_type, http, code, named) in rows {
        let headers: Vec<_> = content_type.iter().map(|v| ("content-type", *v)).collect();
        let (got_http, got_code, message) = raw.head_only(method, path, &headers).await;
        println!(
            "{method} {path} {content_type:?}: HTTP {got_http}, grpc-status {got_code} {message:?}"
        );
        assert_eq!(
            (got_http, got_code),
            (http, code as i32),
            "{method} {content_type:?}: {message}"
        );
        assert!(message.contains(named), "{message}");
    }
    // Two content-types, a good one first: refused, not decided by the first.
    let twice = [("content-type", GRPC), ("content-type", "text/plain")];
    let (http, code, message) = raw.head_only("POST", SEND_PATH, &twice).await;
    assert_eq!(
        (http, code),
        (415, Code::InvalidArgument as i32),
        "{message}"
    );
    assert!(message.contains("content-type sent 2 times"), "{message}");
    server.wait_subscribers(0).await;
    // The same connection still serves a gRPC call.
    let valid = encoded_request(b"after");
    let (code, message) = raw
        .call(SEND_PATH, GRPC, frame(false, valid.len() as u32, &valid))
        .await;
    assert_eq!(code, 0, "{message}");
}
