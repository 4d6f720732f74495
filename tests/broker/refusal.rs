//! A broker that refuses writes (issue 26, items 1 and 2): a Redis full at
//! `maxmemory` with `noeviction`, and a refused login. A refusal that
//! resending cannot fix turns health NOT_SERVING and `messenger_broker_up` 0
//! and is counted by reason; the replica gets room from the stream's own
//! history when it can, and otherwise says what the operator must do; it
//! serves again by itself once the cause is gone, on every connection.

use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::prom::scrape;
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

async fn config_set(admin: &mut ::redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(admin)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET {key}: {e}"));
}

/// The reproduction: 16 KiB messages into a Redis of 8 MB with
/// `noeviction`. Before: from about the 290th send on, every send answered
/// UNAVAILABLE "OOM ... retry with backoff", forever, health SERVING. Now
/// the replica trims the oldest entries it has delivered and every send is
/// acknowledged and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_redis_gets_room_from_the_stream_and_every_send_goes_through() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start_with(
        free_port(),
        &["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"],
        &[],
    )
    .await;
    let a = replica("a", &redis.url(), &[]).await;
    let mut stream = a.subscribe().await;
    let mut grpc = a.grpc().await;
    let text = "x".repeat(16 * 1024);
    let sends = 1_000;
    let mut failed = Vec::new();
    for i in 0..sends {
        if let Err(status) = grpc_send(&mut grpc, "ann", &text).await {
            failed.push((i, status));
        }
        let got = read_n(&mut stream, 1).await;
        assert_eq!(got[0].text.len(), text.len());
    }
    assert!(
        failed.is_empty(),
        "{} of {sends} refused: first {:?}",
        failed.len(),
        failed.first()
    );
    let metrics = scrape(&a.metrics_url()).await;
    let room = metrics.value("messenger_broker_room_made_total", &[]);
    assert!(room.is_some_and(|r| r >= 1.0), "room made: {room:?}");
    assert_eq!(metrics.value("messenger_broker_up", &[]), Some(1.0));
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    assert!(
        a.proc
            .lines()
            .iter()
            .any(|l| l.text.contains("MESSENGER_BROKER_STREAM_BYTES")),
        "the log says which setting to lower"
    );
    println!(
        "full redis: {sends} sends of 16 KiB into maxmemory 8mb: 0 refused (before: every send \
         from about the 290th), room made {room:?} times"
    );
}

/// No room left to give: Redis's `maxmemory` lowered below what it holds,
/// while the stream holds a single entry (the newest is never trimmed). The
/// send is refused naming the cause and what to do, health turns
/// NOT_SERVING and `messenger_broker_up` 0, the refusal is counted; once
/// Redis has room again the replica serves again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_with_no_room_left_is_reported_and_recovers_by_itself() {
    let _heavy = HEAVY.lock().await;
    let redis =
        RedisProc::start_with(free_port(), &["--maxmemory-policy", "noeviction"], &[]).await;
    let a = replica("a", &redis.url(), &[]).await;
    let mut grpc = a.grpc().await;
    grpc_send(&mut grpc, "ann", "before").await.expect("send");
    let mut admin = redis.conn().await;
    config_set(&mut admin, "maxmemory", "100kb").await;

    let refused = grpc_send(&mut grpc, "ann", "full")
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("OOM") && message.contains("raise Redis maxmemory"),
        "{message}"
    );
    assert!(message.contains("nothing was stored"), "{message}");
    let down = health_becomes(a.grpc_addr, ServingStatus::NotServing).await;
    let metrics = scrape(&a.metrics_url()).await;
    assert_eq!(metrics.value("messenger_broker_up", &[]), Some(0.0));
    let oom = metrics.value("messenger_broker_refusals_total", &[("reason", "oom")]);
    assert!(oom.is_some_and(|n| n >= 1.0), "{oom:?}");

    let freed = Instant::now();
    config_set(&mut admin, "maxmemory", "0").await;
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let back = freed.elapsed();
    grpc_send(&mut grpc, "ann", "after")
        .await
        .expect("served again");
    assert_eq!(
        scrape(&a.metrics_url())
            .await
            .value("messenger_broker_up", &[]),
        Some(1.0)
    );
    println!(
        "redis with no room left: refused with the remedy, NOT_SERVING after {down:?}; SERVING \
         again {back:?} after Redis had room"
    );
}

/// The reproduction of a refused login: the password changed and
/// every connection killed, then the password put back. Before: the
/// publishing connection never recovered (watched for 60 s). Now every
/// connection recovers by itself, and the passwords appear nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_recovers_once_its_password_is_put_back() {
    let _heavy = HEAVY.lock().await;
    const P1: &str = "first-secret-7f3a";
    const P2: &str = "second-secret-9c1d";
    let port = free_port();
    let redis = RedisProc::start_with(port, &["--requirepass", P1], &[]).await;
    let url = format!("redis://:{P1}@127.0.0.1:{port}");
    let a = replica("a", &url, &[]).await;
    let mut stream = a.subscribe().await;
    let mut grpc = a.grpc().await;
    grpc_send(&mut grpc, "ann", "before").await.expect("send");
    assert_eq!(read_n(&mut stream, 1).await[0].text, "before");

    let mut admin = redis.conn_as(&url).await;
    config_set(&mut admin, "requirepass", P2).await;
    let _: () = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    let refused = grpc_send(&mut grpc, "ann", "refused")
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    health_becomes(a.grpc_addr, ServingStatus::NotServing).await;
    let metrics = scrape(&a.metrics_url()).await;
    assert_eq!(metrics.value("messenger_broker_up", &[]), Some(0.0));

    config_set(&mut admin, "requirepass", P1).await;
    let restored = Instant::now();
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let serving = restored.elapsed();
    let (_, sent) = poll_until("a send is acknowledged", Duration::from_secs(10), || {
        let mut grpc = grpc.clone();
        async move { grpc_send(&mut grpc, "ann", "after").await.ok() }
    })
    .await;
    let recovered = restored.elapsed();
    let got = read_n(&mut stream, 1).await;
    assert_eq!(got[0].text, "after", "the reader recovered too");

    let metrics = reqwest::get(a.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let debug = format!("http://{}/debug/subscribers", a.metrics_addr);
    let debug = reqwest::get(debug).await.unwrap().text().await.unwrap();
    let logs: String = a
        .proc
        .lines()
        .iter()
        .map(|l| l.text.clone() + "\n")
        .collect();
    for (what, text) in [
        ("refusal", refused.message()),
        ("/metrics", &metrics),
        ("/debug/subscribers", &debug),
        ("the log", &logs),
    ] {
        assert!(
            !text.contains(P1) && !text.contains(P2),
            "a password in {what}"
        );
    }
    println!(
        "refused login: after the password was put back, SERVING in {serving:?} and the first \
         send acknowledged in {recovered:?} (it polled {sent:?}); before: never (60 s watched)"
    );
}
