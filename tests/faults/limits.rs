//! Overload limits: the subscriber cap and SendMessage load shedding refuse
//! with RESOURCE_EXHAUSTED at once and leave everyone already admitted alone.

use crate::HEAVY;
use bytes::Bytes;
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame, grpc_status};
use messenger_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_cap_refuses_the_next_stream_and_keeps_the_others() {
    const CAP: usize = 3;
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start_with(|c| c.max_subscribers = CAP).await;
    let mut streams = Vec::new();
    for _ in 0..CAP {
        streams.push(server.subscribe().await);
    }
    let mut extra = server.grpc().await;
    let refused = within("refusal", extra.read_messages(()))
        .await
        .expect_err("one past the cap is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("MESSENGER_MAX_SUBSCRIBERS")
            && refused.message().contains(&CAP.to_string()),
        "the message names the limit: {}",
        refused.message()
    );
    println!(
        "cap {CAP}: stream {} refused: {}",
        CAP + 1,
        refused.message()
    );

    let sent = grpc_send(&mut server.grpc().await, "a", "after the refusal")
        .await
        .unwrap();
    for stream in &mut streams {
        assert_eq!(read_n(stream, 1).await[0].send_time, sent);
    }
    drop(streams.pop());
    server.wait_subscribers(CAP - 1).await;
    let _again = server.subscribe().await;
    server.wait_subscribers(CAP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_past_the_concurrency_limit_are_shed_not_queued() {
    const LIMIT: usize = 2;
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start_with(|c| c.max_concurrent_sends = LIMIT).await;
    let mut sub = server.subscribe().await;
    // Hold LIMIT calls open mid-body: admitted, not yet decoded.
    let (held, whole) = hold_sends(&server, LIMIT, b"held").await;
    let mut client = server.grpc().await;
    let shed = within("shed", grpc_send(&mut client, "a", "one too many"))
        .await
        .expect_err("shed while the limit is held");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(
        shed.message().contains("MESSENGER_MAX_CONCURRENT_SENDS"),
        "{}",
        shed.message()
    );
    println!("limit {LIMIT}: call {} shed: {}", LIMIT + 1, shed.message());

    // The held calls finish normally and free their slots.
    for (response, mut send) in held {
        send.send_data(Bytes::copy_from_slice(&whole[3..]), true)
            .unwrap();
        let (code, message) = grpc_status(response).await;
        assert_eq!(code, 0, "{message}");
    }
    let sent = grpc_send(&mut client, "a", "after")
        .await
        .expect("slots freed");
    let got = read_n(&mut sub, LIMIT + 1).await;
    assert_eq!(got.last().unwrap().send_time, sent);
    assert!(
        got.iter().all(|m| m.text != "one too many"),
        "a shed call is not delivered"
    );
}

/// A caller that sends a call's headers and part of its request message,
/// then nothing, holds its admission permit only until the request bound
/// (the handshake bound): then the call ends DEADLINE_EXCEEDED naming it and
/// the permit is free. Before, every permit could be held for as long as the
/// connection lived, and every other send was shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_arrives_frees_its_send_permit() {
    const LIMIT: usize = 2;
    const WITHIN_MS: u64 = 600;
    let _heavy = HEAVY.lock().await;
    let server = TestServer::start_with(|c| {
        c.max_concurrent_sends = LIMIT;
        c.conn.handshake_timeout_ms = WITHIN_MS;
    })
    .await;
    let started = std::time::Instant::now();
    let (held, _) = hold_sends(&server, LIMIT, b"never finished").await;
    let mut client = server.grpc().await;
    let shed = within("shed", grpc_send(&mut client, "a", "while held"))
        .await
        .expect_err("shed while the permits are held");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    for (response, _send) in held {
        let (code, message) = within("the held call's status", grpc_status(response)).await;
        assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
        assert!(
            message.contains("did not arrive")
                && message.contains("MESSENGER_HANDSHAKE_TIMEOUT_MS"),
            "{message}"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(WITHIN_MS - 50),
        "{took:?}"
    );
    println!("held calls ended after {took:?}");
    grpc_send(&mut client, "a", "after")
        .await
        .expect("the permits are free again");
}

/// `n` SendMessage calls on one raw connection, each sent its headers and
/// the first 3 bytes of a request for `text`, once admission has counted
/// all `n` (their headers travel on their own connection, so the next call
/// is only a fair test then). Returns them and the whole request frame.
async fn hold_sends(
    server: &TestServer,
    n: usize,
    text: &[u8],
) -> (
    Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)>,
    Vec<u8>,
) {
    let mut raw = Raw::connect(server.addr).await;
    let body = encoded_request(text);
    let whole = frame(false, body.len() as u32, &body);
    let mut held = Vec::new();
    for _ in 0..n {
        let (response, mut send) = raw.open(SEND_PATH, "application/grpc").await;
        send.send_data(Bytes::copy_from_slice(&whole[..3]), false)
            .unwrap();
        held.push((response, send));
    }
    within("held calls admitted", async {
        while server.sends_in_flight.len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    (held, whole)
}
