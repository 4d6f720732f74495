//! The failover figure of issue 25's closing note: the time from `kill -9`
//! of the primary to the first acknowledged send on each messenger replica,
//! p50 and max over `MESSENGER_FAILOVERS` failovers (default 20), with one
//! sender through each replica. Ignored (about 10 s per failover); run with
//! `cargo test --release -p messenger-tests --test broker failover_timing -- --ignored --nocapture`.

use super::load::{Load, check};
use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::sentinel::Topology;
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: about 10 s per failover"]
async fn failover_timing() {
    let _heavy = HEAVY.lock().await;
    let rounds: usize = std::env::var("MESSENGER_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let min_replicas = std::env::var("MESSENGER_BROKER_MIN_REPLICAS").unwrap_or("1".into());
    let mut topology = Topology::start().await;
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", min_replicas.as_str())];
    let a = replica("a", &topology.url(), &env).await;
    let b = replica("b", &topology.url(), &env).await;
    for r in [&a, &b] {
        health_becomes(r.grpc_addr, ServingStatus::Serving).await;
    }
    let load = Load::start(&[&a, &b], 1).await;
    load.wait_acked(50).await;
    let mut took: Vec<Duration> = Vec::new();
    for round in 1..=rounds {
        let old = topology.kill_primary().await;
        let killed = Instant::now();
        load.mark(killed);
        let new = topology.wait_failover(old).await;
        let promoted = killed.elapsed();
        let recovered = load.wait_recovered(Duration::from_secs(60)).await;
        println!(
            "failover {round}: {old} -> {new}, promoted after {promoted:?}; first acknowledged \
             send: a {:?}, b {:?}",
            recovered[0], recovered[1]
        );
        took.extend(recovered);
        // Back as a replica before the next kill, so one can be promoted.
        topology.restart(old).await;
        let so_far = load.sent.lock().unwrap().acked.len();
        load.wait_acked(so_far + 20).await;
    }
    let (sent, held) = load.finish().await;
    took.sort();
    let p50 = took[took.len() / 2];
    let max = took[took.len() - 1];
    println!(
        "MIN_REPLICAS={min_replicas}: kill -9 of the primary to the first acknowledged send, \
         {} samples over {rounds} failovers and 2 replicas: p50 {p50:?}, max {max:?}",
        took.len()
    );
    for (name, held) in ["a", "b"].iter().zip(&held) {
        let (missing, duplicated) = check(&sent.acked, held);
        println!(
            "  subscriber on {name}: {} acknowledged, {} missing, {} duplicated, {} gaps",
            sent.acked.len(),
            missing.len(),
            duplicated.len(),
            held.gaps
        );
        assert!(duplicated.is_empty(), "{name} duplicated {duplicated:?}");
        assert!(
            missing.is_empty() || held.gaps > 0,
            "{name} lost {missing:?} silently"
        );
    }
}
