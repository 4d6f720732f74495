//! Entries written by something else are skipped with a warning and
//! `messenger_broker_errors_total{op="decode"}`, never a panic: the reader
//! delivers ours around them with their offsets unchanged.

use crate::{HEAVY, replica};
use messenger_tests::prom::wait_metrics;
use messenger_tests::redis::RedisProc;
use messenger_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entries_are_skipped_and_counted() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let a = replica("a", &redis.url(), &[]).await;
    let mut grpc = a.grpc().await;
    let mut client = connect(a.grpc_addr).await;
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("messenger-offsets", "1".parse().unwrap());
    let mut stream = within("headers", client.read_messages(request))
        .await
        .unwrap()
        .into_inner();
    grpc_send(&mut grpc, "ann", "one").await.unwrap();

    let mut conn = redis.conn().await;
    let garbage: [&[(&str, &str)]; 4] = [
        &[("foo", "bar")],
        &[
            ("epoch", "x"),
            ("offset", "2"),
            ("sendTime", "soon"),
            ("author", "a"),
            ("text", "t"),
        ],
        &[
            ("epoch", "x"),
            ("offset", "-1"),
            ("sendTime", "1.000000001"),
            ("author", "a"),
            ("text", "t"),
        ],
        // Well formed, but of an epoch the metadata does not know.
        &[
            ("epoch", "x"),
            ("offset", "2"),
            ("sendTime", "1.000000001"),
            ("author", "a"),
            ("text", "t"),
        ],
    ];
    for fields in garbage {
        let _: String = ::redis::AsyncCommands::xadd(&mut conn, "messenger:chat", "*", fields)
            .await
            .unwrap();
    }
    grpc_send(&mut grpc, "ann", "two").await.unwrap();

    let mut got = Vec::new();
    for _ in 0..2 {
        let m = within("message", stream.message()).await.unwrap().unwrap();
        got.push((m.offset, m.text));
    }
    assert_eq!(got, [(1, "one".to_owned()), (2, "two".to_owned())]);
    let m = wait_metrics(&a.metrics_url(), "4 decode errors", |m| {
        m.value("messenger_broker_errors_total", &[("op", "decode")]) == Some(4.0)
    })
    .await;
    assert_eq!(m.value("messenger_broker_up", &[]), Some(1.0));
    let warned = a
        .proc
        .lines()
        .iter()
        .filter(|l| l.text.contains("skipping a malformed broker entry"))
        .count();
    assert_eq!(warned, 4, "one warning per skipped entry");
    println!(
        "malformed: 4 foreign entries skipped with a warning each and counted; ours delivered at offsets 1, 2"
    );
}
