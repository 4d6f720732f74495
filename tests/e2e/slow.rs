//! A subscriber that stops reading is disconnected with RESOURCE_EXHAUSTED;
//! everyone else still gets every message.

use messenger_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_subscriber_is_disconnected_and_others_get_everything() {
    const QUEUE: usize = 16;
    const MESSAGES: usize = 400;
    let server = TestServer::start_with(|c| c.subscriber_queue = QUEUE).await;
    let client = TestClient::start(server.addr).await;
    let mut healthy = server.subscribe().await;
    // Never polled until the end: HTTP/2 flow control stops the server's
    // writes, its queue fills, and the hub must drop it.
    let mut stalled = server.subscribe().await;
    server.wait_subscribers(3).await;

    let mut sender = server.grpc().await;
    let text = "x".repeat(16 * 1024);
    // The reader hands its stream back so it stays subscribed until the end.
    let reader = tokio::spawn(async move { (read_n(&mut healthy, MESSAGES).await, healthy) });
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        sent.push(
            grpc_send(&mut sender, &format!("{i}"), &text)
                .await
                .unwrap(),
        );
    }
    // The stalled one is gone; the healthy raw subscriber and the client remain.
    server.wait_subscribers(2).await;

    let (got, _healthy) = reader.await.unwrap();
    let got: Vec<String> = got.into_iter().map(|m| m.send_time).collect();
    assert_eq!(got, sent, "healthy raw subscriber got everything in order");
    let buffered: Vec<String> = client
        .collect(MESSAGES)
        .await
        .into_iter()
        .map(|m| m.send_time)
        .collect();
    assert_eq!(buffered, sent, "client got everything in order");

    // The stalled subscriber gets a prefix, then an explicit error, never a gap.
    let mut prefix = Vec::new();
    let status = within("stalled stream ends", async {
        loop {
            match stalled.message().await {
                Ok(Some(m)) => prefix.push(Msg::from(m).send_time),
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("fell behind"),
        "{}",
        status.message()
    );
    assert!(
        prefix.len() < MESSAGES,
        "it was disconnected before the end"
    );
    assert_eq!(
        prefix,
        sent[..prefix.len()],
        "what it got is a gap-free prefix"
    );
    client.stop().await;
    server.stop().await.unwrap();
}
