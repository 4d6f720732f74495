//! sendTime across a Redis that lost its data and came back with a clock
//! behind what the clients hold (issue 26, item 3). The replica passes the
//! newest sendTime it delivered to the publish script as a floor, so the new
//! epoch's first stamp is still later than anything a client holds. Before:
//! an hour earlier.
//!
//! The old Redis stamps an hour ahead (its stored last `sendTime` set an
//! hour into the future), and the new one runs on the real clock: the same
//! step back as a Redis restarted with its clock an hour behind. Debian's
//! libfaketime cannot be preloaded into Debian's `redis-server` (its
//! jemalloc calls `clock_gettime` before libfaketime is initialised, and
//! Redis dies at start: "Unexpected recursive calls to clock_gettime()").

use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_back_empty_with_its_clock_behind_still_stamps_later() {
    let _heavy = HEAVY.lock().await;
    let port = free_port();
    let redis = RedisProc::start_with(port, &[] as &[&str], &[]).await;
    let a = replica("a", &redis.url(), &[]).await;
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let mut admin = redis.conn().await;
    let ahead = (chrono::Utc::now().timestamp() + 3600).to_string();
    let _: () = ::redis::cmd("HSET")
        .arg("messenger:chat:meta")
        .arg("sec")
        .arg(&ahead)
        .arg("nsec")
        .arg("000000000")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut grpc = a.grpc().await;
    let before = grpc_send(&mut grpc, "ann", "before").await.expect("send");

    redis.proc.kill9_and_wait().await;
    let _redis = RedisProc::start_with(port, &[] as &[&str], &[]).await;
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let after = poll_until("a send to the new epoch", Duration::from_secs(10), || {
        let mut grpc = grpc.clone();
        async move { grpc_send(&mut grpc, "ann", "after").await.ok() }
    })
    .await
    .0;
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
    let (before_t, after_t) = (parse(&before), parse(&after));
    assert!(
        after_t > before_t,
        "sendTime went back: {before} then {after}"
    );
    assert!(
        after_t - before_t < chrono::Duration::seconds(60),
        "stamped from the floor, not an hour later: {before} then {after}"
    );
    println!(
        "redis back empty with its clock an hour behind: sendTime {before} then {after} \
         (before the fix: an hour earlier)"
    );
}
