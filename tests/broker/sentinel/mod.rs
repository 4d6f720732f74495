//! Redis Sentinel (issue 25): the topology helper itself
//! ([`messenger_tests::sentinel::Topology`]), and messenger replicas on a
//! `redis+sentinel://` URL that follow the primary through failovers with no
//! acknowledged message lost silently.

mod failover;
mod lagging;
mod load;
mod start;
mod switch;
mod timing;

use crate::HEAVY;
use messenger_tests::sentinel::{Topology, role};

/// The topology forms, and a killed primary is replaced by one of its
/// replicas, which every Sentinel names; the old primary, restarted, comes
/// back as a replica of the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_fails_over_when_the_primary_is_killed() {
    let _heavy = HEAVY.lock().await;
    let mut topology = Topology::start().await;
    let first = topology.primary().await;
    assert_eq!(first, topology.nodes[0].port);
    assert_eq!(role(first).await.as_deref(), Some("master"));
    let started = std::time::Instant::now();
    let old = topology.kill_primary().await;
    let new = topology.wait_failover(old).await;
    println!("failover {old} -> {new} in {:?}", started.elapsed());
    assert_ne!(new, old);
    topology.restart(old).await;
    assert_eq!(role(old).await.as_deref(), Some("slave"));
}
