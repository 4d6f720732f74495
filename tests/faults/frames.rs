//! Hostile gRPC input below the generated client: raw HTTP/2 requests with
//! truncated, oversized, mislabelled or garbage frames. Each gets the status
//! that grpc/grpc `doc/statuscodes.md` assigns it, never a panic or a hang,
//! and the server keeps serving.

use crate::HEAVY;
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame};
use messenger_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_get_a_status_and_the_server_survives() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start_with(|c| c.max_text_bytes = 1024).await;
    let grpc = "application/grpc";
    let valid = encoded_request(b"hello");
    let limit = server_decode_limit(1024);
    use tonic::Code::{Internal, ResourceExhausted, Unimplemented};
    // The rows of the status-code table: "Error parsing request proto" (and a
    // message cut short) is INTERNAL, as is a compressed flag without an
    // encoding (doc/compression.md); "larger than configured limit" is
    // RESOURCE_EXHAUSTED; "Request cardinality violation" is UNIMPLEMENTED.
    let cases: Vec<(&str, Vec<u8>, tonic::Code)> = vec![
        ("truncated body", frame(false, 100, &valid), Internal),
        ("only half a prefix", vec![0, 0, 0], Internal),
        (
            "declared 4 GiB",
            frame(false, u32::MAX, &valid),
            ResourceExhausted,
        ),
        (
            "declared over the decode limit",
            frame(false, limit + 1, &vec![b'x'; limit as usize + 1]),
            ResourceExhausted,
        ),
        (
            "compressed flag, no encoding",
            frame(true, valid.len() as u32, &valid),
            Internal,
        ),
        (
            "garbage protobuf",
            frame(false, 4, &[0xff, 0xff, 0xff, 0xff]),
            Internal,
        ),
        ("empty body: no request message", Vec::new(), Unimplemented),
    ];
    let mut sub = server.subscribe().await;
    let mut raw = Raw::connect(server.addr).await;
    for (what, body, expected) in cases {
        let (code, message) = raw.call(SEND_PATH, grpc, body).await;
        println!("{what}: grpc-status {code} {message:?}");
        assert_eq!(code, expected as i32, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: a reason is given");
    }
    // Two messages in a unary call: a cardinality violation, refused before
    // the handler, so neither is accepted.
    let twice = [
        frame(false, valid.len() as u32, &valid),
        frame(false, valid.len() as u32, &valid),
    ]
    .concat();
    let (code, message) = raw.call(SEND_PATH, grpc, twice).await;
    assert_eq!(code, Unimplemented as i32, "{message}");
    let probe = grpc_send(&mut server.grpc().await, "probe", "next")
        .await
        .unwrap();
    let got = read_n(&mut sub, 1).await;
    assert_eq!(
        got[0].send_time, probe,
        "nothing of the refused calls was accepted"
    );
    println!("two messages in a unary call: UNIMPLEMENTED {message:?}, none accepted");
    // Text past the field limit but inside the decode limit: the precise message.
    let long = encoded_request(&[b'x'; 2000]);
    let (code, message) = raw
        .call(SEND_PATH, grpc, frame(false, long.len() as u32, &long))
        .await;
    assert_eq!(code, tonic::Code::InvalidArgument as i32, "{message}");
    assert!(
        message.contains("text") && message.contains("1024"),
        "{message}"
    );
    // Still serving, on the same connection and on a new one.
    let (code, message) = raw
        .call(SEND_PATH, grpc, frame(false, valid.len() as u32, &valid))
        .await;
    assert_eq!(code, 0, "{message}");
    grpc_send(&mut server.grpc().await, "after", "garbage")
        .await
        .expect("still serving");
}

/// Decode limit of a server whose field limits are `max_text` and the default author limit.
fn server_decode_limit(max_text: usize) -> u32 {
    let config = messenger_server::Config {
        max_text_bytes: max_text,
        ..Default::default()
    };
    config.max_decoding_bytes() as u32
}
