//! sendTime across a Redis that lost its data and came back with its clock
//! an hour behind (issue 26, item 3; libfaketime preloaded into that
//! `redis-server` only). The replica passes the newest sendTime it delivered
//! to the publish script as a floor, so the new epoch's first stamp is still
//! later than anything a client holds. Before: an hour earlier.

use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::redis::{RedisProc, free_port, libfaketime_path};
use messenger_tests::*;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_back_empty_with_its_clock_behind_still_stamps_later() {
    let _heavy = HEAVY.lock().await;
    let port = free_port();
    let redis = RedisProc::start_with(port, &[] as &[&str], &[]).await;
    let a = replica("a", &redis.url(), &[]).await;
    let mut grpc = a.grpc().await;
    let before = grpc_send(&mut grpc, "ann", "before").await.expect("send");

    redis.proc.kill9_and_wait().await;
    let faketime = libfaketime_path();
    let faketime = faketime.to_str().expect("a UTF-8 path");
    let env = [
        ("LD_PRELOAD", faketime),
        ("FAKETIME", "-1h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("FAKETIME_DONT_RESET", "1"),
    ];
    let behind = RedisProc::start_with(port, &[] as &[&str], &env).await;
    let mut admin = behind.conn().await;
    let (sec, _): (i64, i64) = ::redis::cmd("TIME").query_async(&mut admin).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - sec - 3600).abs() < 60,
        "libfaketime works: Redis TIME {sec}, now {now}"
    );

    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let after = poll_until(
        "a send to the new epoch",
        std::time::Duration::from_secs(10),
        || {
            let mut grpc = grpc.clone();
            async move { grpc_send(&mut grpc, "ann", "after").await.ok() }
        },
    )
    .await
    .0;
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
    assert!(
        parse(&after) > parse(&before),
        "sendTime went back: {before} then {after}"
    );
    println!(
        "redis back empty, clock 1 h behind: sendTime {before} then {after} (before: an hour earlier)"
    );
}
