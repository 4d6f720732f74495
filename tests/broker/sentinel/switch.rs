//! Planned switchover (`SENTINEL FAILOVER`) under load with
//! `MESSENGER_BROKER_MIN_REPLICAS=1`: nothing lost and no gap (sends pause
//! while the Sentinel fails over), and the old primary coming back:
//! restarted empty as a primary of its own (a crash whose configuration was
//! never rewritten), it is turned into a replica by the Sentinels, and no
//! messenger replica ever runs a script or a read on it.

use super::load::{Load, check, check_exact};
use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::poll_until;
use messenger_tests::prom::scrape;
use messenger_tests::sentinel::{Topology, connect, role};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// No gap either: the replicas pause their sends from the Sentinel's first
/// failover event until they follow the new primary, so nothing is
/// acknowledged on the old primary after a replica was promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planned_switchover_loses_nothing_with_min_replicas_1() {
    let _heavy = HEAVY.lock().await;
    let topology = Topology::start().await;
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", "1")];
    let a = replica("a", &topology.url(), &env).await;
    let b = replica("b", &topology.url(), &env).await;
    for r in [&a, &b] {
        health_becomes(r.grpc_addr, ServingStatus::Serving).await;
    }
    let load = Load::start(&[&a, &b], 2).await;
    load.wait_acked(200).await;
    let started = Instant::now();
    load.mark(started);
    let old = topology.primary().await;
    let new = topology.switchover().await;
    let recovered = load.wait_recovered(Duration::from_secs(30)).await;
    let so_far = load.sent.lock().unwrap().acked.len();
    load.wait_acked(so_far + 200).await;
    let (sent, held) = load.finish().await;
    let paused = (sent.refused.iter())
        .filter(|(_, code, m)| *code == Code::Unavailable && m.contains("failing over"))
        .count();
    println!(
        "switchover {old} -> {new} in {:?}; first acknowledged send after it: a {:?}, b {:?}; \
         {} acknowledged, {} refused ({paused} of them 'failing over')",
        started.elapsed(),
        recovered[0],
        recovered[1],
        sent.acked.len(),
        sent.refused.len()
    );
    for (name, held) in ["a", "b"].iter().zip(&held) {
        let (missing, duplicated) = check(&sent.acked, held);
        println!(
            "  subscriber on {name}: {} held, {} acknowledged missing, {} duplicated, {} gaps",
            held.texts.len(),
            missing.len(),
            duplicated.len(),
            held.gaps
        );
    }
    let wrong = check_exact(&sent.acked, &held);
    assert!(wrong.is_empty(), "not exact: {wrong:?}");
    for (name, r) in [("a", &a), ("b", &b)] {
        let lines = r.proc.lines();
        let logged = |what: &str| lines.iter().filter(|l| l.text.contains(what)).count();
        let pauses = logged("sends paused (UNAVAILABLE");
        let resumes: Vec<&str> = (lines.iter())
            .filter(|l| l.text.contains("broker failover over; sends resume"))
            .map(|l| l.text.as_str())
            .collect();
        let paused_ms = resumes
            .iter()
            .filter_map(|l| field(l, "paused_ms"))
            .collect::<Vec<_>>();
        println!("  replica {name}: sends paused {pauses} time(s), for {paused_ms:?} ms");
        assert_eq!(pauses, 1, "{name}: one pause logged");
        assert_eq!(resumes.len(), 1, "{name}: one resume logged");
        let metrics = scrape(&r.metrics_url()).await;
        for (series, want) in [
            ("messenger_broker_failover_pauses_total", 1.0),
            ("messenger_broker_failovers_total", 1.0),
            ("messenger_broker_up", 1.0),
        ] {
            assert_eq!(metrics.value(series, &[]), Some(want), "{name}: {series}");
        }
    }
}

/// `key=value` in a text log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_old_primary_back_as_a_replica_is_never_written_to() {
    let _heavy = HEAVY.lock().await;
    let mut topology = Topology::start().await;
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", "1")];
    let a = replica("a", &topology.url(), &env).await;
    let b = replica("b", &topology.url(), &env).await;
    for r in [&a, &b] {
        health_becomes(r.grpc_addr, ServingStatus::Serving).await;
    }
    let load = Load::start(&[&a, &b], 1).await;
    load.wait_acked(100).await;
    let old = topology.kill_primary().await;
    load.mark(Instant::now());
    topology.wait_failover(old).await;
    load.wait_recovered(Duration::from_secs(30)).await;
    // Back empty, as a primary, while sends go on; the Sentinels demote it.
    topology.restart_alone(old).await;
    poll_until(
        "the Sentinels demote the old primary",
        Duration::from_secs(30),
        || async { (role(old).await.as_deref() == Some("slave")).then_some(()) },
    )
    .await;
    let so_far = load.sent.lock().unwrap().acked.len();
    load.wait_acked(so_far + 100).await;
    let (sent, held) = load.finish().await;
    for (name, held) in ["a", "b"].iter().zip(&held) {
        let (missing, duplicated) = check(&sent.acked, held);
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
        assert!(duplicated.is_empty(), "{name} duplicated {duplicated:?}");
    }
    // Our scripts (publish, epoch) go out as EVALSHA and reads as XREAD/
    // XREVRANGE; what a replica applies from its primary is the scripts'
    // effects, so any of these on the old node came from a messenger replica.
    let mut conn = connect(old).await.expect("the old primary answers");
    let stats: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    for ours in [
        "cmdstat_evalsha:",
        "cmdstat_eval:",
        "cmdstat_xread:",
        "cmdstat_xrevrange:",
    ] {
        assert!(!stats.contains(ours), "{ours} on the old primary:\n{stats}");
    }
    println!("old primary {old} back as a replica: no script or read from a messenger replica");
}
