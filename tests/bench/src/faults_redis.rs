//! The Redis side of `soak-faults`: a primary, two replicas and three
//! Sentinels, Debian's `redis-server` (the Sentinels run it with
//! `--sentinel`), each on a free 127.0.0.1 port with a directory of its own.
//!
//! - Every node keeps an append-only file (`appendfsync everysec`): a primary
//!   that restarts without one comes back empty and wipes its replicas.
//! - Sentinels: quorum 2, [`DOWN_AFTER_MS`] and [`FAILOVER_TIMEOUT_MS`], the
//!   values issue 25's tests use.
//! - A killed node is restarted only after its failover has completed
//!   ([`Topology::wait_failover`]); it comes back with its own config (a
//!   primary's, for the old primary) and the Sentinels turn it into a
//!   replica of the new primary. [`Topology::wait_settled`] waits for that.
//!
//! Questions to Redis go through `redis-cli` (Debian's `redis-tools`, which
//! `redis-server` depends on).

use crate::procs::Proc;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The master name the Sentinels monitor.
pub(crate) const MASTER: &str = "messenger";
pub(crate) const DOWN_AFTER_MS: u64 = 1000;
pub(crate) const FAILOVER_TIMEOUT_MS: u64 = 5000;
/// Data nodes: one primary and this many replicas.
const REPLICAS: usize = 2;
const SENTINELS: usize = 3;
const READY: &str = "Ready to accept connections";

struct Node {
    port: u16,
    proc: Option<Proc>,
}

/// The running topology; every process is killed when it is dropped.
pub(crate) struct Topology {
    redis_server: PathBuf,
    redis_cli: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    sentinels: Vec<(u16, Proc)>,
}

/// A port nothing listens on now (bound, then released): Redis takes no port 0.
pub(crate) fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

impl Topology {
    /// Starts the primary, its replicas and the Sentinels, and waits until
    /// the Sentinels see all of it.
    pub(crate) fn start(redis_server: &Path, dir: &Path) -> Result<Self, String> {
        let redis_cli = redis_server.with_file_name("redis-cli");
        let mut topology = Self {
            redis_server: redis_server.to_owned(),
            redis_cli: if redis_cli.exists() {
                redis_cli
            } else {
                "redis-cli".into()
            },
            dir: dir.to_owned(),
            nodes: Vec::new(),
            sentinels: Vec::new(),
        };
        for i in 0..=REPLICAS {
            let port = free_port()?;
            topology.nodes.push(Node { port, proc: None });
            let primary = (i > 0).then(|| topology.nodes[0].port);
            topology.spawn_node(i, primary)?;
        }
        for i in 0..SENTINELS {
            let port = free_port()?;
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(&conf, sentinel_conf(port, topology.nodes[0].port))
                .map_err(|e| format!("write {}: {e}", conf.display()))?;
            let conf = conf.to_string_lossy().into_owned();
            let proc = Proc::spawn(
                &format!("sentinel-{i}"),
                redis_server,
                &[&conf, "--sentinel"],
                &[],
            )?;
            proc.wait_line("`+monitor master`", |l| {
                l.contains("+monitor master").then(String::new)
            })?;
            topology.sentinels.push((port, proc));
        }
        topology.wait_settled(Duration::from_secs(30))?;
        Ok(topology)
    }

    fn spawn_node(&mut self, i: usize, replica_of: Option<u16>) -> Result<(), String> {
        let port = self.nodes[i].port;
        let dir = self.dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (port_s, dir_s) = (port.to_string(), dir.to_string_lossy().into_owned());
        let primary_s = replica_of.map(|p| p.to_string());
        let mut args = vec![
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir_s,
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ];
        if let Some(p) = &primary_s {
            args.extend(["--replicaof", "127.0.0.1", p]);
        }
        let proc = Proc::spawn(&format!("redis-{port}"), &self.redis_server, &args, &[])
            .map_err(|e| format!("{e} (Debian: apt-get install redis-server)"))?;
        proc.wait_line(&format!("`{READY}`"), |l| {
            l.contains(READY).then(String::new)
        })?;
        self.nodes[i].proc = Some(proc);
        Ok(())
    }

    /// `redis+sentinel://` naming every Sentinel.
    pub(crate) fn sentinel_url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// `redis://` to the first primary (for runs without failovers).
    pub(crate) fn primary_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }

    fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.redis_cli)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.redis_cli.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.starts_with("Could not connect") {
            return Err(format!("redis-cli -p {port} {}: {text}", args.join(" ")));
        }
        Ok(text)
    }

    /// The primary's port as each Sentinel names it (`None`: no answer).
    fn primaries(&self) -> Vec<Option<u16>> {
        self.sentinels
            .iter()
            .map(|(port, _)| {
                let text = self
                    .cli(*port, &["sentinel", "get-master-addr-by-name", MASTER])
                    .ok()?;
                text.lines().nth(1)?.trim().parse().ok()
            })
            .collect()
    }

    /// The primary the first answering Sentinel names.
    pub(crate) fn primary(&self) -> Result<u16, String> {
        self.primaries()
            .into_iter()
            .flatten()
            .next()
            .ok_or_else(|| "no Sentinel names a primary".to_owned())
    }

    /// kill -9 of the node on `port`.
    pub(crate) fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.proc.take(); // dropping a Proc kills it with SIGKILL
        }
    }

    /// Restarts the node on `port` in its own directory, with its own config.
    pub(crate) fn restart(&mut self, port: u16) -> Result<(), String> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| format!("no Redis node on {port}"))?;
        let primary = (i > 0).then(|| self.nodes[0].port);
        self.spawn_node(i, primary)
    }

    /// Waits until every Sentinel names a primary other than `old`.
    pub(crate) fn wait_failover(&self, old: u16, limit: Duration) -> Result<u16, String> {
        let start = Instant::now();
        loop {
            let seen = self.primaries();
            if let [Some(p), rest @ ..] = seen.as_slice()
                && *p != old
                && rest.iter().all(|q| *q == Some(*p))
            {
                return Ok(*p);
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "no failover from {old} within {limit:?}: Sentinels name {seen:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the Sentinels agree on a primary that has every other node
    /// as an online replica, and none of them is flagged down.
    pub(crate) fn wait_settled(&self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let why = match self.settled() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if start.elapsed() > limit {
                return Err(format!("Redis not settled within {limit:?}: {why}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn settled(&self) -> Result<(), String> {
        let seen = self.primaries();
        let primary = seen[0].ok_or("a Sentinel names no primary")?;
        if seen.iter().any(|p| *p != Some(primary)) {
            return Err(format!("Sentinels disagree: {seen:?}"));
        }
        let info = self.cli(primary, &["info", "replication"])?;
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count();
        if !info.contains("role:master") || online < REPLICAS {
            return Err(format!("primary {primary}: {online} online replicas"));
        }
        for (port, _) in &self.sentinels {
            let text = self.cli(*port, &["sentinel", "replicas", MASTER])?;
            let lines: Vec<&str> = text.lines().collect();
            let flags: Vec<&str> = lines
                .windows(2)
                .filter(|w| w[0] == "flags")
                .map(|w| w[1])
                .collect();
            if flags.len() < REPLICAS || flags.iter().any(|f| *f != "slave") {
                return Err(format!("Sentinel {port} sees replicas {flags:?}"));
            }
        }
        Ok(())
    }

    /// Stops every process with SIGTERM (Sentinels first).
    pub(crate) fn stop(self) {
        for (_, p) in self.sentinels {
            p.stop();
        }
        for node in self.nodes {
            if let Some(p) = node.proc {
                p.stop();
            }
        }
    }
}

fn sentinel_conf(port: u16, primary: u16) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER} 1\n"
    )
}
