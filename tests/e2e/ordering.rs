//! Total order under concurrency: 8 senders x 200 messages, spread over two
//! HTTP clients and raw gRPC, observed by 2 clients and 3 raw subscribers.

use messenger_tests::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const SENDERS: usize = 8;
const PER_SENDER: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_sees_one_identical_ascending_sequence() {
    let server = TestServer::start().await;
    let clients = Arc::new([
        TestClient::start(server.addr).await,
        TestClient::start(server.addr).await,
    ]);
    let mut raw = Vec::new();
    for _ in 0..3 {
        raw.push(server.subscribe().await);
    }
    server.wait_subscribers(5).await;

    // Senders 0..6 go through the HTTP clients, 6..8 straight to gRPC.
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let clients = Arc::clone(&clients);
        let mut grpc = server.grpc().await;
        tasks.push(tokio::spawn(async move {
            let author = format!("sender-{s}");
            let mut acked = Vec::with_capacity(PER_SENDER);
            for i in 0..PER_SENDER {
                let text = format!("{s}/{i}");
                let send_time = if s < 6 {
                    clients[s % 2].send(&author, &text).await
                } else {
                    grpc_send(&mut grpc, &author, &text).await.expect("send")
                };
                acked.push(Msg {
                    author: author.clone(),
                    text,
                    send_time,
                });
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let total = SENDERS * PER_SENDER;

    let mut sequences = Vec::new();
    for stream in &mut raw {
        sequences.push(read_n(stream, total).await);
    }
    for client in clients.iter() {
        sequences.push(client.collect(total).await);
    }

    let reference = &sequences[0];
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq, reference, "subscriber {i} saw a different sequence");
    }
    assert!(
        reference
            .windows(2)
            .all(|w| w[0].send_time < w[1].send_time),
        "sendTime strictly ascending"
    );
    let streamed: HashSet<_> = reference.iter().cloned().collect();
    let acked_set: HashSet<_> = acked.iter().cloned().collect();
    assert_eq!(
        streamed, acked_set,
        "streamed messages equal what the senders were acknowledged"
    );
    // Each sender's own messages appear in the order it sent them.
    let mut next: HashMap<&str, usize> = HashMap::new();
    for m in reference {
        let (s, i) = m.text.split_once('/').unwrap();
        let expected = next.entry(s).or_default();
        assert_eq!(
            i.parse::<usize>().unwrap(),
            *expected,
            "sender {s} out of order"
        );
        *expected += 1;
    }
    println!(
        "ordering: {} subscribers x {total} messages = {} deliveries checked",
        sequences.len(),
        sequences.len() * total
    );

    let clients = Arc::into_inner(clients).expect("senders finished");
    for c in clients {
        c.stop().await;
    }
    server.stop().await.unwrap();
}
