//! A Redis Sentinel topology for the failover tests and the fault soak: one
//! primary, two replicas and three Sentinels (Debian's `redis-server` and
//! `redis-sentinel`), each on a free loopback port, without persistence.
//! The Sentinels use `down-after-milliseconds 1000`, `failover-timeout 5000`
//! and quorum 2, so a killed primary is replaced within a few seconds.
//!
//! Readiness is an event, polled with a bound: a replica is ready when its
//! `INFO replication` says `master_link_status:up`; the topology is ready
//! when every Sentinel knows both replicas and the two other Sentinels. A
//! failover is over when every Sentinel names a new primary and that node
//! answers `ROLE` as master; the Sentinels can fail over again once they
//! have settled on it ([`Topology::wait_settled`], in `settle`).
//!
//! Invariants: nodes keep their ports for the whole test (a node restarts on
//! its own port), so a port names a node; a killed node restarts only when
//! the test asks ([`Topology::restart`]), after its failover.

mod settle;

use crate::poll_until;
use crate::procs::Proc;
use crate::redis::{RedisProc, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the tests look for the Sentinel binary (Debian's `redis-sentinel`).
pub const REDIS_SENTINEL: &str = "redis-sentinel";
/// The master name the Sentinels monitor.
pub const MASTER: &str = "mymaster";
/// `down-after-milliseconds` and `failover-timeout` of every Sentinel.
pub const DOWN_AFTER_MS: u64 = 1_000;
pub const FAILOVER_TIMEOUT_MS: u64 = 5_000;
/// Upper bound for the topology to form, and for one failover.
pub const FORM_WITHIN: Duration = Duration::from_secs(30);
pub const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// One Redis node: its fixed port and its process while it runs.
pub struct Node {
    pub port: u16,
    pub proc: Option<RedisProc>,
    /// `replica-priority` (lower is preferred by Sentinel; 100 is Redis's default).
    pub priority: u32,
    dir: PathBuf,
}

/// One primary, two replicas, three Sentinels; all killed on drop.
pub struct Topology {
    /// Index 0 is the first primary.
    pub nodes: Vec<Node>,
    pub sentinels: Vec<(u16, Proc)>,
    _dir: tempfile::TempDir,
}

/// `redis-sentinel`'s path, or a failure saying how to install it.
pub fn redis_sentinel_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(REDIS_SENTINEL))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{REDIS_SENTINEL} is not installed: the Sentinel tests need it \
                 (`apt-get install redis-sentinel`; `make test` and .ci/run install it)"
            )
        })
}

impl Topology {
    /// The standard topology, every replica at the default priority.
    pub async fn start() -> Self {
        Self::start_with_priorities([100, 100]).await
    }

    /// With the two replicas' `replica-priority` (lower is promoted first).
    pub async fn start_with_priorities(priorities: [u32; 2]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for priority in [100].into_iter().chain(priorities) {
            let port = free_port();
            let node_dir = dir.path().join(format!("redis-{port}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.push(Node {
                port,
                proc: None,
                priority,
                dir: node_dir,
            });
        }
        let primary = nodes[0].port;
        for (i, node) in nodes.iter_mut().enumerate() {
            let replica_of = (i > 0).then_some(primary);
            node.proc = Some(start_node(node, replica_of).await);
        }
        for node in &nodes[1..] {
            wait_link_up(node.port).await;
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            sentinels.push((port, start_sentinel(dir.path(), port, primary).await));
        }
        let topology = Self {
            nodes,
            sentinels,
            _dir: dir,
        };
        topology.wait_formed().await;
        topology
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = (self.sentinels.iter())
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The Sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|(p, _)| *p).collect()
    }

    /// The primary's port as the first Sentinel that answers names it.
    pub async fn primary(&self) -> u16 {
        for (port, _) in &self.sentinels {
            if let Some(p) = master_addr(*port).await {
                return p;
            }
        }
        panic!("no Sentinel answered get-master-addr-by-name {MASTER}")
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Node {
        (self.nodes.iter().find(|n| n.port == port)).unwrap_or_else(|| panic!("no node on {port}"))
    }

    /// `kill -9` the current primary; returns its port.
    pub async fn kill_primary(&mut self) -> u16 {
        let port = self.primary().await;
        self.kill(port).await;
        port
    }

    /// `kill -9` the node on `port` (it stays down until [`Self::restart`]).
    pub async fn kill(&mut self, port: u16) {
        let node = (self.nodes.iter_mut().find(|n| n.port == port)).expect("node");
        if let Some(redis) = node.proc.take() {
            redis.proc.kill9_and_wait().await;
        }
    }

    /// Waits until every Sentinel names a primary other than `old` and that
    /// node says it is the master; returns its port.
    pub async fn wait_failover(&self, old: u16) -> u16 {
        let ports = self.sentinel_ports();
        let (new, _) = poll_until("a Sentinel failover", FAILOVER_WITHIN, || {
            let ports = ports.clone();
            async move {
                let mut named = Vec::new();
                for port in ports {
                    named.push(master_addr(port).await?);
                }
                let first = named[0];
                let agreed = first != old && named.iter().all(|p| *p == first);
                (agreed && role(first).await.as_deref() == Some("master")).then_some(first)
            }
        })
        .await;
        new
    }

    /// `SENTINEL FAILOVER` (a planned switchover) through the first
    /// Sentinel; returns the new primary's port once every Sentinel names it.
    pub async fn switchover(&self) -> u16 {
        let old = self.primary().await;
        let mut conn = connect(self.sentinels[0].0).await.expect("sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query_async(&mut conn)
            .await
            .expect("SENTINEL FAILOVER");
        self.wait_failover(old).await
    }

    /// Restarts the node on `port` (empty: no persistence) as a replica of
    /// the current primary, and waits for its link to be up: how a killed
    /// node comes back once its failover is over.
    pub async fn restart(&mut self, port: u16) {
        let primary = self.primary().await;
        let i = (self.nodes.iter())
            .position(|n| n.port == port)
            .expect("node");
        assert!(self.nodes[i].proc.is_none(), "node {port} is running");
        self.nodes[i].proc = Some(start_node(&self.nodes[i], Some(primary)).await);
        wait_link_up(port).await;
    }

    /// Restarts the node on `port` (empty) as a primary of its own, as a
    /// crashed primary whose configuration was never rewritten comes back;
    /// the Sentinels turn it into a replica of the current primary.
    pub async fn restart_alone(&mut self, port: u16) {
        let i = (self.nodes.iter())
            .position(|n| n.port == port)
            .expect("node");
        assert!(self.nodes[i].proc.is_none(), "node {port} is running");
        self.nodes[i].proc = Some(start_node(&self.nodes[i], None).await);
    }

    /// Waits until every Sentinel knows both replicas and the two other
    /// Sentinels (so a failover has its quorum and a replica to promote).
    pub async fn wait_formed(&self) {
        for (port, _) in &self.sentinels {
            let port = *port;
            poll_until(
                "the Sentinels to know each other",
                FORM_WITHIN,
                || async move {
                    let info = sentinel_master(port).await?;
                    let n = |k: &str| info.get(k).and_then(|v| v.parse::<u32>().ok());
                    (n("num-slaves")? >= 2 && n("num-other-sentinels")? >= 2).then_some(())
                },
            )
            .await;
        }
    }
}

/// A connection to the Redis or Sentinel on `port`, if it answers.
pub async fn connect(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let connect = client.get_multiplexed_async_connection();
    tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()
}

/// The primary's port as the Sentinel on `sentinel` names it.
pub async fn master_addr(sentinel: u16) -> Option<u16> {
    let mut conn = connect(sentinel).await?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()?;
    addr.map(|(_, port)| port)
}

/// `SENTINEL MASTER mymaster` as a map.
async fn sentinel_master(sentinel: u16) -> Option<std::collections::HashMap<String, String>> {
    let mut conn = connect(sentinel).await?;
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()
}

/// `master` or `slave`: the first word of `ROLE` on the node on `port`.
pub async fn role(port: u16) -> Option<String> {
    let mut conn = connect(port).await?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
    redis::from_redis_value(role.into_iter().next()?).ok()
}

/// `INFO replication` of the node on `port`.
pub async fn info_replication(port: u16) -> Option<String> {
    let mut conn = connect(port).await?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()
}

async fn wait_link_up(port: u16) {
    poll_until(
        "a replica's link to its primary",
        FORM_WITHIN,
        || async move {
            let info = info_replication(port).await?;
            info.contains("master_link_status:up").then_some(())
        },
    )
    .await;
}

async fn start_node(node: &Node, replica_of: Option<u16>) -> RedisProc {
    let mut args = vec![
        "--appendonly".to_owned(),
        "no".to_owned(),
        "--repl-diskless-sync".to_owned(),
        "yes".to_owned(),
        "--repl-diskless-sync-delay".to_owned(),
        "0".to_owned(),
        "--replica-priority".to_owned(),
        node.priority.to_string(),
        "--dir".to_owned(),
        node.dir.display().to_string(),
    ];
    if let Some(primary) = replica_of {
        args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned()]);
        args.push(primary.to_string());
    }
    RedisProc::start_with(node.port, &args, &[]).await
}

async fn start_sentinel(dir: &Path, port: u16, primary: u16) -> Proc {
    let conf = dir.join(format!("sentinel-{port}.conf"));
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER} 2\n",
        dir = dir.display()
    );
    std::fs::write(&conf, text).expect("write sentinel.conf");
    let mut command = Command::new(redis_sentinel_path());
    command.arg(&conf);
    let proc = Proc::spawn_command(&format!("sentinel:{port}"), command);
    proc.wait_line("sentinel monitoring", |l| {
        l.text.contains("+monitor master")
    })
    .await;
    proc
}
