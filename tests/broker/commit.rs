//! Group commit: sends queued on one replica while its publish script call
//! is held up share the next call. Redis is paused (`CLIENT PAUSE`) while 8
//! concurrent sends arrive, so at most two calls are in flight and the rest
//! must go out together; every send is still acknowledged in one order,
//! with consecutive offsets and ascending stamps, and the batch histogram
//! accounts for every message.

use crate::{HEAVY, replica};
use messenger_tests::prom::{scrape, wait_metrics};
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame};
use messenger_tests::redis::RedisProc;
use messenger_tests::*;

const SENDS: usize = 8;
/// Long enough for 8 spawned sends to reach the replica on a loaded 2-core
/// machine; the test checks they did before the pause ends (`CLIENT
/// UNPAUSE` is itself held by the pause, so it cannot end it early).
const PAUSE_MS: u64 = 2_000;
/// The replica's broker timeout, above the pause (the default, 1 s, is not).
const BROKER_TIMEOUT: (&str, &str) = ("MESSENGER_BROKER_TIMEOUT_MS", "10000");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_queued_behind_a_held_call_share_the_next_one() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let server = replica("a", &redis.url(), &[BROKER_TIMEOUT]).await;
    let mut stream = subscribe_at(server.grpc_addr).await;
    let mut clients = Vec::new();
    for _ in 0..SENDS {
        clients.push(connect(server.grpc_addr).await);
    }

    pause(&redis).await;
    let paused_at = std::time::Instant::now();
    let sends = clients.into_iter().enumerate().map(|(i, mut grpc)| {
        tokio::spawn(async move { grpc_send(&mut grpc, "a", &format!("m{i}")).await })
    });
    let sends: Vec<_> = sends.collect();
    // The premise: every send is in the replica while Redis is still paused.
    let send = [("grpc_method", "SendMessage")];
    wait_metrics(&server.metrics_url(), "every send started", |m| {
        m.sum("grpc_server_started_total", &send) >= SENDS as f64
    })
    .await;
    let arrived = paused_at.elapsed();
    assert!(
        arrived < std::time::Duration::from_millis(PAUSE_MS),
        "the {SENDS} sends took {arrived:?} to reach the replica, past the {PAUSE_MS} ms pause"
    );
    let mut acked = Vec::new();
    for send in sends {
        let sent = within("a send held by the pause", send).await.unwrap();
        acked.push(sent.expect("acknowledged once Redis resumes"));
    }
    acked.sort();

    let got = read_n(&mut stream, SENDS).await;
    let stamps: Vec<String> = got.iter().map(|m| m.send_time.clone()).collect();
    assert_eq!(
        stamps, acked,
        "one ascending order, equal to the acknowledgements"
    );

    let metrics = scrape(&server.metrics_url()).await;
    let batch = "messenger_broker_publish_batch_messages";
    let calls = metrics.sum(&format!("{batch}_count"), &[]);
    let messages = metrics.sum(&format!("{batch}_sum"), &[]);
    assert_eq!(messages, SENDS as f64, "every message counted in one call");
    assert!(
        calls <= 3.0,
        "{SENDS} sends behind a paused Redis took {calls} script calls: at most 2 in flight, \
         then the rest together"
    );
    println!(
        "group commit: {SENDS} concurrent sends behind a {PAUSE_MS} ms pause took {calls} script calls"
    );
}

/// A send whose deadline passes while the broker holds its publish was
/// started but never counted as handled (its handler was dropped), so
/// `grpc_server_started_total - grpc_server_handled_total` grew for good.
/// It is now counted `DeadlineExceeded`, as the caller saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_past_its_deadline_behind_a_paused_broker_is_counted_deadline_exceeded() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let server = replica("a", &redis.url(), &[]).await;
    // Raw HTTP/2 with only the header: tonic's client applies a
    // `grpc-timeout` itself and would end the call first, CANCELLED.
    let mut raw = Raw::connect(server.grpc_addr).await;
    pause(&redis).await;
    let body = encoded_request(b"late");
    let timeout = format!("{}m", PAUSE_MS / 5);
    let headers = [("grpc-timeout", timeout.as_str())];
    let body = frame(false, body.len() as u32, &body);
    let call = raw.call_with(SEND_PATH, "application/grpc", &headers, body);
    let (code, message) = within("a send behind the pause", call).await;
    assert_eq!(code, tonic::Code::DeadlineExceeded as i32, "{message}");
    let send = |code| [("grpc_method", "SendMessage"), ("grpc_code", code)];
    let m = messenger_tests::prom::wait_metrics(&server.metrics_url(), "the send counted", |m| {
        m.sum("grpc_server_handled_total", &send("DeadlineExceeded")) >= 1.0
    })
    .await;
    assert_eq!(
        m.sum(
            "grpc_server_started_total",
            &[("grpc_method", "SendMessage")]
        ),
        m.sum(
            "grpc_server_handled_total",
            &[("grpc_method", "SendMessage")]
        ),
        "every started send is handled"
    );
}

/// Holds every Redis client for [`PAUSE_MS`] (`CLIENT PAUSE ... ALL`).
async fn pause(redis: &RedisProc) {
    let mut admin = redis.conn().await;
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE_MS)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .expect("CLIENT PAUSE");
}
