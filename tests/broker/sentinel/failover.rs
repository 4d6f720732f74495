//! Failover under load: two messenger replicas on the Sentinel URL, a raw
//! subscriber on each, two senders through each; the primary is killed
//! (`kill -9`) mid-load and the senders keep going. With
//! `MESSENGER_BROKER_MIN_REPLICAS=1` every acknowledged message reaches
//! every subscriber exactly once, in one order; with 0, every acknowledged
//! message is held, or the subscriber that lacks it saw the gap. Each
//! replica follows the Sentinels to the primary they name at the end,
//! counting one failover per switch it followed: at least one, and no more
//! than the switches the Sentinels made (under load they may fail over
//! again right after a switch: "spurious" in `tests/src/sentinel/settle.rs`).

use super::load::{Load, check, order_of};
use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::poll_until;
use messenger_tests::procs::ServerProc;
use messenger_tests::prom::scrape;
use messenger_tests::sentinel::{Topology, master_addr};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;

/// Sends acknowledged before the kill, and after every replica is back.
const BEFORE: usize = 200;
const AFTER: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_loses_no_acknowledged_message_with_min_replicas_1() {
    let _heavy = HEAVY.lock().await;
    failover_under_load("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_loses_nothing_silently_with_min_replicas_0() {
    let _heavy = HEAVY.lock().await;
    failover_under_load("0").await;
}

async fn failover_under_load(min_replicas: &str) {
    let mut topology = Topology::start().await;
    let url = topology.url();
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", min_replicas)];
    let a = replica("a", &url, &env).await;
    let b = replica("b", &url, &env).await;
    for r in [&a, &b] {
        health_becomes(r.grpc_addr, ServingStatus::Serving).await;
    }
    let load = Load::start(&[&a, &b], 2).await;
    load.wait_acked(BEFORE).await;
    let switches = Switches::watch(topology.sentinel_ports());
    let old = topology.kill_primary().await;
    let killed = Instant::now();
    load.mark(killed);
    let new = topology.wait_failover(old).await;
    let promoted = killed.elapsed();
    let recovered = load.wait_recovered(Duration::from_secs(30)).await;
    let so_far = load.sent.lock().unwrap().acked.len();
    load.wait_acked(so_far + AFTER).await;
    let (sent, held) = load.finish().await;

    let acked: HashSet<&str> = sent.acked.iter().map(String::as_str).collect();
    println!(
        "MIN_REPLICAS={min_replicas}: primary {old} killed, {new} promoted after {promoted:?}; \
         first acknowledged send after the kill: a {:?}, b {:?}; {} acknowledged, {} refused",
        recovered[0],
        recovered[1],
        sent.acked.len(),
        sent.refused.len()
    );
    let mut orders = Vec::new();
    for (name, held) in ["a", "b"].iter().zip(&held) {
        let (missing, duplicated) = check(&sent.acked, held);
        println!(
            "  subscriber on {name}: {} held, {} acknowledged missing, {} duplicated, {} gaps",
            held.texts.len(),
            missing.len(),
            duplicated.len(),
            held.gaps
        );
        assert!(duplicated.is_empty(), "{name} duplicated {duplicated:?}");
        if min_replicas == "0" {
            assert!(
                missing.is_empty() || held.gaps > 0,
                "{name} lacks {} acknowledged messages without a gap: {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        } else {
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
        }
        orders.push(order_of(&acked, held));
    }
    if orders.iter().all(|o| o.len() == acked.len()) {
        assert_eq!(orders[0], orders[1], "one order on every subscriber");
    }
    let (now, counted) = followed(&topology, &[&a, &b]).await;
    let switched = switches.stop().await;
    println!("  the Sentinels switched {switched:?}; now {now}; the replicas counted {counted:?}");
    for ((name, r), failovers) in [("a", &a), ("b", &b)].into_iter().zip(counted) {
        assert!(
            (1..=switched.len()).contains(&failovers),
            "{name}: {failovers} failovers followed, where the Sentinels switched {switched:?}"
        );
        let metrics = scrape(&r.metrics_url()).await;
        let port = old.to_string();
        let labels = [
            ("server_address", "127.0.0.1"),
            ("server_port", port.as_str()),
        ];
        let info = metrics.value("messenger_broker_primary_info", &labels);
        assert_eq!(info, Some(0.0), "{name}: the primary before");
    }
}

/// Waits until every Sentinel names one primary and each replica's
/// `messenger_broker_primary_info` says it uses that one; returns it and
/// each replica's `messenger_broker_failovers_total`.
async fn followed(topology: &Topology, replicas: &[&ServerProc]) -> (u16, Vec<usize>) {
    let sentinels = topology.sentinel_ports();
    let within = Duration::from_secs(30);
    let (found, _) = poll_until(
        "each replica to use the primary the Sentinels name",
        within,
        || {
            let sentinels = sentinels.clone();
            async move {
                let mut named = HashSet::new();
                for port in sentinels {
                    named.insert(master_addr(port).await?);
                }
                let [now] = named.into_iter().collect::<Vec<_>>()[..] else {
                    return None;
                };
                let mut counted = Vec::new();
                for r in replicas {
                    let metrics = scrape(&r.metrics_url()).await;
                    let port = now.to_string();
                    let labels = [
                        ("server_address", "127.0.0.1"),
                        ("server_port", port.as_str()),
                    ];
                    if metrics.value("messenger_broker_primary_info", &labels) != Some(1.0) {
                        return None;
                    }
                    let failovers = metrics.value("messenger_broker_failovers_total", &[])?;
                    counted.push(failovers as usize);
                }
                Some((now, counted))
            }
        },
    )
    .await;
    found
}

/// The switches of primary (old port, new port) any Sentinel named, polled
/// every 20 ms until [`Switches::stop`].
struct Switches {
    stop: Arc<AtomicBool>,
    task: JoinHandle<HashSet<(u16, u16)>>,
}

impl Switches {
    fn watch(sentinels: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut last = vec![None; sentinels.len()];
            let mut seen = HashSet::new();
            while !stopped.load(Ordering::Relaxed) {
                for (i, port) in sentinels.iter().enumerate() {
                    let Some(named) = master_addr(*port).await else {
                        continue;
                    };
                    if let Some(before) = last[i].replace(named)
                        && before != named
                    {
                        seen.insert((before, named));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        Self { stop, task }
    }

    async fn stop(self) -> HashSet<(u16, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the switch watcher")
    }
}
