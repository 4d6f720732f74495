//! A wedged reader (issue 25, the lesson of centrifugo#1189): a TCP proxy
//! between replica A and Redis silently stops forwarding A's reader
//! connection while its publishing connection still goes through. A's own
//! sends are still acknowledged (delivered by their senders), but nothing
//! another replica sends reaches A. A must turn NOT_SERVING within twice
//! `MESSENGER_BROKER_TIMEOUT_MS` and say why, then read again on a new
//! connection. Before: the `XREAD` waited its 1 s block plus the timeout,
//! past the bound whenever the timeout is under a second.

use crate::{HEAVY, replica};
use messenger_tests::procs::Line;
use messenger_tests::proxy::Proxy;
use messenger_tests::redis::RedisProc;
use messenger_tests::*;
use std::net::SocketAddr;
use std::time::Duration;

const TIMEOUT_MS: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wedged_reader_turns_not_serving_within_twice_the_timeout() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let upstream: SocketAddr = ([127, 0, 0, 1], redis.port).into();
    let proxy = Proxy::start(upstream).await;
    let timeout = TIMEOUT_MS.to_string();
    let env = [("MESSENGER_BROKER_TIMEOUT_MS", timeout.as_str())];
    let a = replica("a", &format!("redis://{}", proxy.addr), &env).await;
    let b = replica("b", &redis.url(), &[]).await;
    let mut on_a = a.subscribe().await;
    let (mut grpc_a, mut grpc_b) = (a.grpc().await, b.grpc().await);
    grpc_send(&mut grpc_a, "ann", "warm")
        .await
        .expect("send via A");
    assert_eq!(read_n(&mut on_a, 1).await[0].text, "warm");

    // The reader connects first, then the publisher (its warm-up PING).
    let stalled_at = chrono::Utc::now();
    proxy.stall_nth(0).await;
    grpc_send(&mut grpc_a, "ann", "own")
        .await
        .expect("A's own send still goes through");
    grpc_send(&mut grpc_b, "bob", "from b")
        .await
        .expect("send via B");
    let got: Vec<String> = read_n(&mut on_a, 2)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(got, ["own", "from b"], "A reads again after the stall");

    let down: Line = a
        .proc
        .wait_line("the reader's stall logged", |l| {
            l.text.contains("broker unreachable") && l.logged_at() > stalled_at
        })
        .await;
    let took = (down.logged_at() - stalled_at).to_std().unwrap();
    let bound = Duration::from_millis(2 * TIMEOUT_MS);
    assert!(
        took <= bound + Duration::from_millis(150),
        "NOT_SERVING {took:?} after the stall; bound {bound:?}: {}",
        down.text
    );
    println!(
        "wedged reader: NOT_SERVING {took:?} after its connection stalled (bound {bound:?}), then read again"
    );
}
