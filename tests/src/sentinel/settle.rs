//! When the Sentinels can fail over again: [`Topology::wait_settled`].
//!
//! A failover is over for the test once every Sentinel *names* the new
//! primary ([`Topology::wait_failover`]), but not yet for the Sentinels.
//! Killing the new primary at that point stalls the next failover, for two
//! reasons seen in the Sentinels' logs (Redis 7.0):
//! - `get-master-addr-by-name` on the leader names the promoted replica while
//!   the leader is still reconfiguring the other replicas, its master record
//!   still at the dead node. A failover in that state ends only once the
//!   promoted replica is reachable again (`sentinelFailoverDetectEnd`), so
//!   with it killed the leader stays wedged, answering the dead node, and
//!   cannot vote for the next failover. When the next promotion picks the
//!   node its record already points at, no config update ever moves it.
//! - With `down-after-milliseconds` 1000, equal to Sentinel's PING period, a
//!   Sentinel that has just switched to a new primary may mark it down
//!   before its first PING to it is answered, and the Sentinels fail over a
//!   live primary ("spurious" below). The demoted node stays a primary of
//!   its own until the Sentinels convert it to a replica, about 20 s later.
//!
//! Settled, as each of the three Sentinels sees it (`SENTINEL MASTER` and
//! `SENTINEL REPLICAS`), polled every 20 ms within [`SETTLE_WITHIN`]:
//! - all three master records are at the same port, with flags exactly
//!   `master` (no `s_down`, `o_down`, `failover_in_progress`,
//!   `disconnected`) and `last-ping-sent` 0: a PING was answered since the
//!   record moved there, so the race above is over. Moving the record is
//!   Sentinel's switch (`sentinelResetMasterAndChangeAddress`), which resets
//!   it and with it `failover_start_time`: no "Next failover delay" (2 ×
//!   `failover-timeout` after a Sentinel's last attempt or vote) is pending;
//! - each knows the two other Sentinels (the quorum of 2, the majority vote);
//! - every other node is listed as a replica with flags exactly `slave`,
//!   `last-ping-sent` 0, `master-link-status` `ok` and `master-port` that
//!   primary: a node Sentinel may promote next (`sentinelSelectSlave`: not
//!   down, connected, fresh `INFO`, link up).

use super::{MASTER, Topology, connect, sentinel_master};
use crate::poll_until;
use std::collections::HashMap;
use std::time::Duration;

type Fields = HashMap<String, String>;

/// Upper bound for the Sentinels to settle. After a spurious failover the
/// demoted node is converted to a replica about 20 s later (Sentinel reads a
/// replica's `INFO` every 10 s and waits 4 × its 2 s publish period after
/// the wrong role is reported); measured 22-23 s on a loaded machine.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

impl Topology {
    /// Waits until the Sentinels have settled on one primary (see the module
    /// docs) and returns its port: a `kill -9` of it now is failed over
    /// without delay. It differs from the node [`Topology::wait_failover`]
    /// returned only after a spurious failover.
    pub async fn wait_settled(&self) -> u16 {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        let sentinels = self.sentinel_ports();
        let (primary, _) = poll_until("the Sentinels to settle", SETTLE_WITHIN, || {
            let (ports, sentinels) = (ports.clone(), sentinels.clone());
            async move {
                let mut primaries = Vec::new();
                for sentinel in sentinels {
                    primaries.push(settled(sentinel, &ports).await?);
                }
                let first = primaries[0];
                primaries.iter().all(|p| *p == first).then_some(first)
            }
        })
        .await;
        primary
    }
}

/// The primary the Sentinel on `sentinel` has settled on, if it has.
async fn settled(sentinel: u16, nodes: &[u16]) -> Option<u16> {
    let master = sentinel_master(sentinel).await?;
    let field = |m: &Fields, k: &str| m.get(k).cloned().unwrap_or_default();
    let primary: u16 = field(&master, "port").parse().ok()?;
    let others: u32 = field(&master, "num-other-sentinels").parse().ok()?;
    let up =
        |m: &Fields, flags: &str| field(m, "flags") == flags && field(m, "last-ping-sent") == "0";
    if !up(&master, "master") || others < 2 {
        return None;
    }
    let listed = sentinel_replicas(sentinel).await?;
    let replica_ok = |port: &u16| {
        listed.iter().any(|r| {
            field(r, "port") == port.to_string()
                && up(r, "slave")
                && field(r, "master-link-status") == "ok"
                && field(r, "master-port") == primary.to_string()
        })
    };
    nodes
        .iter()
        .filter(|p| **p != primary)
        .all(replica_ok)
        .then_some(primary)
}

/// `SENTINEL REPLICAS mymaster`, each as a map.
async fn sentinel_replicas(sentinel: u16) -> Option<Vec<Fields>> {
    let mut conn = connect(sentinel).await?;
    redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()
}
