//! Which Sentinel to ask for the primary: the one whose configuration of our
//! master is the newest, by its `config-epoch` (`SENTINEL MASTER <name>`),
//! the number a Sentinel bumps when it fails the master over and that the
//! others adopt when they learn of it.
//!
//! Why: around a failover the Sentinels disagree. One that has not learnt
//! of it yet still names the old primary; the leader itself names the old
//! primary (with the new epoch) until its `+switch-master`, while the others,
//! told by its hellos, already name the new one; and after a planned
//! switchover the old primary still answers `ROLE` as master for seconds
//! more. Asking the Sentinels in the URL's order could then follow the old
//! primary again and write to it: a new epoch, a gap.
//!
//! Invariants: every Sentinel is asked at once, each within the broker
//! timeout, on one cached connection per Sentinel (dropped on any error);
//! among those with the highest epoch, the node most of them name wins,
//! then the URL's order; none answering is `None`.

use super::{Follower, Sentinel};
use std::collections::HashMap;
use std::time::Duration;

impl Follower {
    /// The place in the URL of the Sentinel with the newest configuration
    /// of our master, if any answers within `timeout`.
    pub(super) async fn newest(&self, timeout: Duration) -> Option<usize> {
        let asks = (self.each.iter()).map(|sentinel| async move {
            let info = tokio::time::timeout(timeout, sentinel.master(&self.master)).await;
            let info = info.ok()?.ok()?;
            let epoch: u64 = info.get("config-epoch")?.parse().ok()?;
            Some((epoch, info.get("ip")?.clone(), info.get("port")?.clone()))
        });
        let answers = futures_util::future::join_all(asks).await;
        newest(&answers)
    }
}

/// Of each Sentinel's `(config-epoch, ip, port)`, the place of the first
/// that names the node most of those with the highest epoch name.
fn newest(answers: &[Option<(u64, String, String)>]) -> Option<usize> {
    let top = answers.iter().flatten().map(|(epoch, ..)| *epoch).max()?;
    let newest = |a: &&(u64, String, String)| a.0 == top;
    let named = |node: &(u64, String, String)| {
        (answers.iter().flatten().filter(newest))
            .filter(|other| other.1 == node.1 && other.2 == node.2)
            .count()
    };
    let most = answers.iter().flatten().filter(newest).map(named).max()?;
    answers
        .iter()
        .position(|a| a.as_ref().is_some_and(|a| a.0 == top && named(a) == most))
}

impl Sentinel {
    /// `SENTINEL MASTER <master>` as this Sentinel answers it.
    pub(super) async fn master(&self, master: &str) -> redis::RedisResult<HashMap<String, String>> {
        let mut cached = self.conn.lock().await;
        let conn = match cached.as_mut() {
            Some(conn) => conn,
            None => {
                let client = self.client.lock().await.async_get_sentinel_client().await?;
                cached.insert(client.get_multiplexed_async_connection().await?)
            }
        };
        let answer = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(master)
            .query_async(conn)
            .await;
        if answer.is_err() {
            *cached = None;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::newest;

    fn says(epoch: u64, port: &str) -> Option<(u64, String, String)> {
        Some((epoch, "127.0.0.1".into(), port.into()))
    }

    #[test]
    fn the_highest_epoch_wins_then_the_node_most_name_then_the_first() {
        assert_eq!(newest(&[says(0, "1"), says(1, "2"), None]), Some(1));
        // The leader before its switch: the new epoch, the old node.
        assert_eq!(newest(&[says(1, "1"), says(1, "2"), says(1, "2")]), Some(1));
        assert_eq!(newest(&[says(1, "1"), None, says(1, "2")]), Some(0));
        assert_eq!(newest(&[None, None]), None);
    }
}
