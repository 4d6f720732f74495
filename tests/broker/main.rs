//! The Redis engine (issue 14): real `messenger-server` replicas (and real
//! `messenger-client`s) sharing one real `redis-server` on a free loopback
//! port. Order across replicas, stamping, group commit, Redis loss, replica loss and
//! foreign entries. Each test prints the figures it proves
//! (`cargo test --release --test broker -- --nocapture`).
//!
//! Needs `redis-server` on PATH; without it every test fails saying so.

mod clock;
mod commit;
mod durability;
mod epoch;
mod loss;
mod malformed;
mod order;
mod refusal;
mod replica;
mod rollback;
mod sentinel;
mod stall;
mod stamping;
mod tls;
mod traces;

pub(crate) use messenger_tests::poll_until;
use messenger_tests::procs::{ServerProc, spawn_server};

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
