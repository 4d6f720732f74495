//! The Redis engine (issue 14): real `messenger-server` replicas (and real
//! `messenger-client`s) sharing one real `redis-server` on a free loopback
//! port. Order across replicas, stamping, Redis loss, replica loss and
//! foreign entries. Each test prints the figures it proves
//! (`cargo test --release --test broker -- --nocapture`).
//!
//! Needs `redis-server` on PATH; without it every test fails saying so.

mod loss;
mod malformed;
mod order;
mod replica;
mod stamping;
mod tls;
mod traces;

use messenger_tests::WAIT;
use messenger_tests::procs::{ServerProc, spawn_server};
use std::future::Future;
use std::time::{Duration, Instant};

/// Serialises the tests of this binary: each runs several processes and a
/// Redis, and they must not time each other out on a small machine.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The send timeout the replicas run with, in ms (`MESSENGER_BROKER_TIMEOUT_MS`).
pub(crate) const BROKER_TIMEOUT_MS: u64 = 1000;

/// A replica of the chat on `redis_url`, on 127.0.0.1 with free ports
/// (or those `extra` sets).
pub(crate) async fn replica(name: &str, redis_url: &str, extra: &[(&str, &str)]) -> ServerProc {
    let timeout = BROKER_TIMEOUT_MS.to_string();
    let mut env = vec![
        ("MESSENGER_BROKER_URL", redis_url),
        ("MESSENGER_BROKER_TIMEOUT_MS", timeout.as_str()),
        ("OTEL_SERVICE_NAME", name),
    ];
    env.extend_from_slice(extra);
    spawn_server(&env).await
}

/// Polls `probe` every 20 ms until it returns `Some`, failing after `limit`.
/// Returns the value and how long it took. For conditions in another
/// process that have no event to wait on (a health status, a metric).
pub(crate) async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut probe: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit.max(WAIT),
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
