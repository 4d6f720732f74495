//! One total order across replicas: three servers on one Redis, raw
//! subscribers and a real client on each, 8 concurrent senders spread over
//! the three. Every subscriber holds the identical sequence, in strictly
//! ascending `sendTime` (so unique stamps across replicas), equal to the
//! acknowledgements; each offset follows the one before.

use crate::{HEAVY, replica};
use messenger_proto::pb::ServerMessageResponse;
use messenger_proto::time::format_rfc3339;
use messenger_tests::procs::spawn_client;
use messenger_tests::redis::RedisProc;
use messenger_tests::*;
use std::time::Instant;
use tonic::Streaming;

const SENDERS: usize = 8;
const PER_SENDER: usize = 100;

/// Opens `ReadMessages` with offsets on `addr`; returns once headers arrived.
async fn subscribe_offsets(addr: std::net::SocketAddr) -> Streaming<ServerMessageResponse> {
    let mut client = connect(addr).await;
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("messenger-offsets", "1".parse().unwrap());
    within("ReadMessages headers", client.read_messages(request))
        .await
        .expect("subscribe")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_one_identical_order() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let url = redis.url();
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(replica(name, &url, &[]).await);
    }
    let mut clients = Vec::new();
    let mut raw = Vec::new();
    for r in &replicas {
        clients.push(spawn_client(r.grpc_addr, &[]).await);
        for _ in 0..2 {
            raw.push(subscribe_offsets(r.grpc_addr).await);
        }
    }

    // Sender s goes to replica s % 3; odd senders through that replica's client.
    let started = Instant::now();
    let clients = std::sync::Arc::new(clients);
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let mut grpc = connect(replicas[s % 3].grpc_addr).await;
        let clients = std::sync::Arc::clone(&clients);
        tasks.push(tokio::spawn(async move {
            let author = format!("sender-{s}");
            let mut acked = Vec::with_capacity(PER_SENDER);
            for i in 0..PER_SENDER {
                let text = format!("{s}/{i}");
                let send_time = if s % 2 == 1 {
                    clients[s % 3].send(&author, &text).await
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
    let sending = started.elapsed();
    let total = SENDERS * PER_SENDER;
    acked.sort_by(|a, b| a.send_time.cmp(&b.send_time));
    acked.dedup_by(|a, b| a.send_time == b.send_time);
    assert_eq!(acked.len(), total, "every acknowledged sendTime is unique");

    let mut first_offset = None;
    for (i, stream) in raw.iter_mut().enumerate() {
        let mut got = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(total);
        within(&format!("subscriber {i}: {total} messages"), async {
            while got.len() < total {
                let m = stream.message().await.expect("stream").expect("open");
                offsets.push(m.offset);
                got.push(Msg {
                    author: m.author.clone(),
                    text: m.text.clone(),
                    send_time: format_rfc3339(m.send_time.as_ref().unwrap()).unwrap(),
                });
            }
        })
        .await;
        assert_eq!(got, acked, "subscriber {i} holds the acknowledged order");
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "subscriber {i}: offsets +1 each"
        );
        assert_eq!(*first_offset.get_or_insert(offsets[0]), offsets[0]);
    }
    for (i, client) in clients.iter().enumerate() {
        let got = client.collect(total).await;
        assert_eq!(got, acked, "client {i} holds the acknowledged order");
    }
    println!(
        "order: {total} messages from {SENDERS} concurrent senders over 3 replicas on one Redis \
         in {sending:?}; 6 raw subscribers and 3 clients hold the identical sequence, sendTime \
         strictly ascending and equal to the acknowledgements"
    );
}
