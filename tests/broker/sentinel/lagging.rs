//! A lagging Redis replica promoted (issue 25's rollback, by failover), with
//! `MESSENGER_BROKER_MIN_REPLICAS=0`, the setting in which a failover can
//! lose acknowledged messages. The replica Sentinel prefers
//! (`replica-priority 1`; the other is at 100) replicates through a TCP
//! proxy that silently stops forwarding; m6–m8 are then acknowledged and
//! delivered at offsets 6–8 on both messenger replicas, the primary is
//! killed, and the lagging replica, whose link still looks up, is promoted
//! holding m1–m5 only.
//!
//! The outcome the issue requires: every subscriber holds every acknowledged
//! message or has reported the gap (its stream ended "history lost", the
//! resume said `recovered: false` and gave a new epoch); a new epoch is one
//! that every messenger replica reports; and no (epoch, offset) ever names two
//! messages, on any subscriber.
//!
//! Determinism: every step waits on an event (replication offsets, Sentinel
//! state, deliveries), bounded. Sentinel reconfigures a replica that points
//! at a wrong master (`+fix-slave-config`), but only `failover-timeout` (5 s)
//! after it has seen the change and while the master is up; the test checks
//! right before the kill that the preferred replica still replicates through
//! the proxy and still ends at m5, so a fix could not have healed the lag.

use super::load::{Held, Load, check};
use crate::loss::{health_becomes, read};
use crate::{HEAVY, replica};
use messenger_server::app::config::DEFAULT_BROKER_STREAM;
use messenger_tests::proxy::Proxy;
use messenger_tests::sentinel::{Topology, connect, info_replication};
use messenger_tests::*;
use std::collections::HashMap;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_replica_promoted_is_a_new_epoch_on_every_messenger_replica() {
    let _heavy = HEAVY.lock().await;
    let mut topology = Topology::start_with_priorities([1, 100]).await;
    let lagging = topology.nodes[1].port;
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", "0")];
    let a = replica("a", &topology.url(), &env).await;
    let b = replica("b", &topology.url(), &env).await;
    for r in [&a, &b] {
        health_becomes(r.grpc_addr, ServingStatus::Serving).await;
    }
    let load = Load::start(&[&a, &b], 0).await;
    let (epoch, _, _) = read(a.grpc_addr, "messenger-offsets", "1").await;
    let mut grpc_a = a.grpc().await;
    for i in 1..=5 {
        grpc_send(&mut grpc_a, "ann", &format!("m{i}"))
            .await
            .unwrap();
    }
    // The preferred replica now replicates through the proxy; once it holds
    // m1-m5 there, the proxy swallows everything.
    let primary = topology.primary().await;
    let proxy = Proxy::start(([127, 0, 0, 1], primary).into()).await;
    let mut conn = connect(lagging).await.expect("the preferred replica");
    let _: () = ::redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(proxy.addr.port())
        .query_async(&mut conn)
        .await
        .unwrap();
    let through = format!("master_port:{}", proxy.addr.port());
    poll_until("m1-m5 on the preferred replica", WAIT, || {
        let through = through.clone();
        async move {
            let info = info_replication(lagging).await?;
            let up = info.contains(&through) && info.contains("master_link_status:up");
            (up && newest_offset(lagging).await? == 5).then_some(())
        }
    })
    .await;
    proxy.stall_existing().await;
    for i in 6..=8 {
        grpc_send(&mut grpc_a, "ann", &format!("m{i}"))
            .await
            .unwrap();
    }
    for held in &load.held {
        poll_until("m1-m8 delivered", WAIT, || async {
            (held.lock().unwrap().texts.len() == 8).then_some(())
        })
        .await;
        let held = held.lock().unwrap();
        let want: Vec<_> = (1..=8)
            .map(|i| (format!("m{i}"), (epoch.clone(), i)))
            .collect();
        let got: Vec<_> = held.texts.iter().cloned().zip(held.at.clone()).collect();
        assert_eq!(got, want, "m1-m8 at offsets 1-8 of epoch {epoch}");
    }
    // Still behind, and still through the proxy (not fixed by Sentinel).
    let info = info_replication(lagging)
        .await
        .expect("the preferred replica");
    assert!(info.contains(&through), "still through the proxy:\n{info}");
    assert_eq!(
        newest_offset(lagging).await,
        Some(5),
        "the preferred replica lags"
    );
    assert_eq!(newest_offset(primary).await, Some(8));

    let old = topology.kill_primary().await;
    let new = topology.wait_failover(old).await;
    assert_eq!(
        new, lagging,
        "Sentinel promoted the preferred, lagging replica"
    );
    println!("promoted {new}, at offset 5, 3 behind what both messenger replicas delivered");
    // The old primary back as a replica, and the Sentinels settled, so no
    // further failover moves the primary while the outcome is read.
    topology.restart(old).await;
    let settled = topology.wait_settled().await;
    let (sent, held) = load.finish().await;
    let mut acked: Vec<String> = (1..=8).map(|i| format!("m{i}")).collect();
    acked.extend(sent.acked);

    // Each messenger replica reports the epoch it is in now, and the gap
    // from m8 of the first epoch.
    let mut reported = Vec::new();
    for (name, r) in [("a", &a), ("b", &b)] {
        let (now, recovered, _) = read(r.grpc_addr, "messenger-since", &format!("{epoch}:8")).await;
        println!("replica {name}: epoch {now}, recovered {recovered:?} from {epoch}:8");
        let lost = r
            .proc
            .lines()
            .iter()
            .any(|l| l.text.contains("history lost"));
        println!("replica {name}: logged \"history lost\": {lost}");
        reported.push((now, recovered));
    }
    assert_eq!(
        reported[0], reported[1],
        "every messenger replica reports the same"
    );
    let (now, recovered) = &reported[0];
    assert_ne!(
        *now, epoch,
        "the promoted node lacks m6-m8: a new epoch (settled on {settled})"
    );
    assert_eq!(recovered.as_deref(), Some("false"), "the gap reported");
    check_outcome(&acked, &held, &epoch, now);
}

/// No acknowledged message skipped silently, and no offset naming two
/// messages, on any subscriber.
fn check_outcome(acked: &[String], held: &[Held], first: &str, now: &str) {
    let mut named: HashMap<&(String, u64), &str> = HashMap::new();
    for (name, held) in ["a", "b"].iter().zip(held) {
        let (missing, duplicated) = check(acked, held);
        println!(
            "subscriber on {name}: {} held, {} gaps, missing {missing:?}, epochs {:?}",
            held.texts.len(),
            held.gaps,
            epochs(held)
        );
        assert!(duplicated.is_empty(), "{name} duplicated {duplicated:?}");
        assert!(
            missing.is_empty() || held.gaps > 0,
            "{name} lost {missing:?} silently"
        );
        let epochs = epochs(held);
        assert!(
            held.gaps > 0 && epochs.first() == Some(&first) && epochs.last() == Some(&now),
            "{name}: the first epoch, then the gap and the one reported now: {epochs:?}"
        );
        for (at, text) in held.at.iter().zip(&held.texts) {
            let before = named.insert(at, text);
            assert!(
                before.is_none_or(|t| t == text.as_str()),
                "{name}: {at:?} names {text} and {before:?}"
            );
        }
    }
}

/// The epochs `held` got messages in, in order.
fn epochs(held: &Held) -> Vec<&str> {
    let mut epochs: Vec<&str> = held.at.iter().map(|(e, _)| e.as_str()).collect();
    epochs.dedup();
    epochs
}

/// The offset of the newest entry of the chat's stream on the node on `port`.
async fn newest_offset(port: u16) -> Option<u64> {
    let mut conn = connect(port).await?;
    let reply: ::redis::streams::StreamRangeReply = ::redis::cmd("XREVRANGE")
        .arg(DEFAULT_BROKER_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .ok()?;
    let entry = reply.ids.first()?;
    entry.get::<String>("offset")?.parse().ok()
}
