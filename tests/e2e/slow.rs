//! A subscriber that stops reading is disconnected with RESOURCE_EXHAUSTED;
//! everyone else still gets every message.

use messenger_tests::*;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_subscriber_is_disconnected_and_others_get_everything() {
    const QUEUE: usize = 16;
    const MESSAGES: usize = 400;
    const LEAD: usize = QUEUE / 4;
    let server = TestServer::start_with(|c| c.subscriber_queue = QUEUE).await;
    let client = TestClient::start(server.addr).await;
    let mut healthy = server.subscribe().await;
    // Never polled until the end: HTTP/2 flow control stops the server's
    // writes, its queue fills, and the hub must drop it.
    let mut stalled = server.subscribe().await;
    server.wait_subscribers(3).await;

    let mut sender = server.grpc().await;
    let text = "x".repeat(16 * 1024);
    // The reader hands its stream back so it stays subscribed until the end,
    // and tells the sender how far it has read.
    let (progress, mut read) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(MESSAGES);
        while got.len() < MESSAGES {
            got.extend(read_n(&mut healthy, 1).await);
            progress.send_replace(got.len());
        }
        (got, healthy)
    });
    // The sender stays at most LEAD messages ahead of the subscribers that
    // read: one that is only late (tests in parallel on 2 cores) is not the
    // slow consumer this test is about, and an unpaced sender got it cut
    // off in CI. The stalled one never reads, so it is cut off regardless.
    let mut buffered = Vec::new();
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        if let Some(behind) = i.checked_sub(LEAD) {
            within(
                "the raw subscriber keeps up",
                read.wait_for(|&n| n >= behind),
            )
            .await
            .expect("the reader is running");
            within("the client keeps up", async {
                while buffered.len() < behind {
                    buffered.extend(client.flush().await);
                    if buffered.len() < behind {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
            .await;
        }
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
    buffered.extend(client.collect(MESSAGES - buffered.len()).await);
    let buffered: Vec<String> = buffered.into_iter().map(|m| m.send_time).collect();
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
