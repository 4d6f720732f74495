//! Hostile gRPC input below the generated client: raw HTTP/2 requests with
//! truncated, oversized, mislabelled or garbage frames. Each gets a gRPC
//! status, never a panic or a hang, and the server keeps serving.

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
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("truncated body", grpc, frame(false, 100, &valid)),
        ("only half a prefix", grpc, vec![0, 0, 0]),
        ("declared 4 GiB", grpc, frame(false, u32::MAX, &valid)),
        (
            "declared over the decode limit",
            grpc,
            frame(false, limit + 1, &vec![b'x'; limit as usize + 1]),
        ),
        (
            "compressed flag, no encoding",
            grpc,
            frame(true, valid.len() as u32, &valid),
        ),
        (
            "garbage protobuf",
            grpc,
            frame(false, 4, &[0xff, 0xff, 0xff, 0xff]),
        ),
        ("empty body", grpc, Vec::new()),
    ];
    let mut raw = Raw::connect(server.addr).await;
    for (what, content_type, body) in cases {
        let (code, message) = raw.call(SEND_PATH, content_type, body).await;
        println!("{what}: grpc-status {code} {message:?}");
        assert_ne!(code, 0, "{what}: must be refused");
        // 2 UNKNOWN would mean an unmapped error leaked out.
        assert_ne!(code, 2, "{what}: {message}");
    }
    // tonic reads the first message of a unary call and ignores the rest:
    // accepted once, never twice.
    let twice = [
        frame(false, valid.len() as u32, &valid),
        frame(false, valid.len() as u32, &valid),
    ]
    .concat();
    let mut sub = server.subscribe().await;
    let (code, message) = raw.call(SEND_PATH, grpc, twice).await;
    assert_eq!(code, 0, "{message}");
    let probe = grpc_send(&mut server.grpc().await, "probe", "next")
        .await
        .unwrap();
    let got = read_n(&mut sub, 2).await;
    assert_eq!(
        (got[0].text.as_str(), got[1].send_time.as_str()),
        ("hello", probe.as_str())
    );
    println!("two messages in a unary call: the first accepted once, the second ignored");
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
