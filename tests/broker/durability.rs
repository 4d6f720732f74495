//! `MESSENGER_BROKER_MIN_REPLICAS` (issue 25): with a Redis replica
//! attached, a send with `MIN_REPLICAS=1` is acknowledged once the replica
//! holds it (Redis `WAIT` on the publishing connection); with the replica
//! gone, the send answers UNAVAILABLE saying the message is stored on the
//! primary but not yet replicated, outcome unknown; the wait timeout is
//! counted. The stored message reaches the subscribers only once a Redis
//! replica holds it (the reader's gate), and the replica is NOT_SERVING
//! until then.

use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::prom::scrape;
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_waits_for_a_redis_replica_and_says_when_it_is_not_replicated() {
    let _heavy = HEAVY.lock().await;
    let primary = RedisProc::start().await;
    let port = primary.port.to_string();
    // Its own directory: a replica writes the RDB it receives there.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().expect("a UTF-8 path");
    let copy_args = ["--replicaof", "127.0.0.1", &port, "--dir", dir];
    let copy = RedisProc::start_with(free_port(), &copy_args, &[]).await;
    copy.proc
        .wait_line("the replica synced", |l| {
            l.text
                .contains("MASTER <-> REPLICA sync: Finished with success")
        })
        .await;
    // The primary counts the replica once it is online and has acknowledged
    // an offset (its first REPLCONF ACK); a WAIT before that answers 0.
    let admin = primary.conn().await;
    poll_until(
        "the primary sees its replica online",
        Duration::from_secs(10),
        || {
            let mut admin = admin.clone();
            async move {
                let info: String = ::redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut admin)
                    .await
                    .ok()?;
                let online = info.lines().any(|l| {
                    l.starts_with("slave0:")
                        && l.contains("state=online")
                        && !l.contains("offset=0,")
                });
                online.then_some(())
            }
        },
    )
    .await;
    let a = replica(
        "a",
        &primary.url(),
        &[("MESSENGER_BROKER_MIN_REPLICAS", "1")],
    )
    .await;
    let mut stream = a.subscribe().await;
    let mut grpc = a.grpc().await;

    let started = Instant::now();
    grpc_send(&mut grpc, "ann", "replicated")
        .await
        .expect("acknowledged");
    let replicated = started.elapsed();
    assert_eq!(read_n(&mut stream, 1).await[0].text, "replicated");
    let mut on_copy = copy.conn().await;
    let len: usize = ::redis::cmd("XLEN")
        .arg("messenger:chat")
        .query_async(&mut on_copy)
        .await
        .unwrap();
    assert_eq!(len, 1, "the replica holds the acknowledged message");

    copy.proc.kill9_and_wait().await;
    let started = Instant::now();
    let refused = grpc_send(&mut grpc, "ann", "unconfirmed")
        .await
        .expect_err("not replicated");
    let took = started.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("not yet replicated")
            && message.contains("MESSENGER_BROKER_MIN_REPLICAS")
            && message.contains("outcome unknown"),
        "{message}"
    );
    // Stored on the primary alone: the reader holds it back (a failover now
    // would lose it) and the replica is NOT_SERVING until a Redis replica
    // holds it; then it is delivered, and the replica serves again.
    let reading = tokio::spawn(async move {
        let got = read_n(&mut stream, 1).await;
        (got, Instant::now())
    });
    health_becomes(a.grpc_addr, ServingStatus::NotServing).await;
    let metrics = scrape(&a.metrics_url()).await;
    assert_eq!(
        metrics.value("messenger_broker_wait_timeouts_total", &[]),
        Some(1.0),
        "the sender's WAIT only (the reader's are not sends)"
    );
    let back = Instant::now();
    let _copy = RedisProc::start_with(free_port(), &copy_args, &[]).await;
    let (got, at) = reading.await.expect("the reading task");
    assert_eq!(got[0].text, "unconfirmed", "delivered once replicated");
    assert!(at >= back, "delivered before any Redis replica held it");
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    println!(
        "MIN_REPLICAS=1: acknowledged in {replicated:?} with a replica; without it UNAVAILABLE \
         \"not yet replicated\" after {took:?} (timeout {} ms)",
        crate::BROKER_TIMEOUT_MS
    );
}
