//! The faults of `soak-faults` ([`crate::soak_faults`]) and the processes
//! they hit: the two server replicas ([`Cluster`]) on the Redis topology
//! ([`Topology`]), and the clients' proxies.
//!
//! Each [`fault`] injects one fault, measures its recovery with probes
//! ([`crate::soak_faults::recover`]) and, for a failover, restarts the old
//! primary once the Sentinels promoted another and waits until it is a
//! replica again, so every fault starts from the whole topology.

use crate::faults_proxy::Proxy;
use crate::faults_redis::{FAILOVER_TIMEOUT_MS, Topology};
use crate::procs::Proc;
use crate::soak_faults::{RECOVERY_LIMIT, blocking};
use crate::soak_faults_recover::{Watched, recover};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Links,
    Replica,
    Failover,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Links, Self::Replica, Self::Failover];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Links => "links",
            Self::Replica => "replica",
            Self::Failover => "failover",
        }
    }

    /// `links,replica,failover` (any non-empty subset, no repeats).
    pub(crate) fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim) {
            let kind = Self::ALL
                .into_iter()
                .find(|k| k.name() == word)
                .ok_or_else(|| {
                    format!("--faults: unknown fault {word:?} (links, replica, failover)")
                })?;
            if kinds.contains(&kind) {
                return Err(format!("--faults: {word} given twice"));
            }
            kinds.push(kind);
        }
        Ok(kinds)
    }
}

/// xorshift64: reproducible from the printed seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn shuffled(&mut self, kinds: &[Kind]) -> Vec<Kind> {
        let mut out = kinds.to_vec();
        for i in (1..out.len()).rev() {
            out.swap(i, self.below(i + 1));
        }
        out
    }
}

/// The server replicas and the Redis topology under them.
pub(crate) struct Cluster {
    topology: Topology,
    bin: PathBuf,
    url: String,
    min_replicas: String,
    servers: Vec<Option<Proc>>,
    pub(crate) grpc: Vec<SocketAddr>,
}

impl Cluster {
    /// Two server replicas on `url`, each on a free port it keeps across restarts.
    pub(crate) fn start(
        topology: Topology,
        bin: PathBuf,
        url: String,
        min_replicas: String,
    ) -> Result<Self, String> {
        let mut cluster = Self {
            topology,
            bin,
            url,
            min_replicas,
            servers: Vec::new(),
            grpc: Vec::new(),
        };
        for i in 0..2 {
            let (proc, addr) = cluster.spawn_server(i, 0)?;
            cluster.servers.push(Some(proc));
            cluster.grpc.push(addr);
        }
        Ok(cluster)
    }

    fn spawn_server(&self, i: usize, port: u16) -> Result<(Proc, SocketAddr), String> {
        let port = port.to_string();
        let env = [
            ("MESSENGER_SERVER_HOST", "127.0.0.1"),
            ("MESSENGER_SERVER_PORT", port.as_str()),
            ("MESSENGER_METRICS_PORT", "0"),
            ("MESSENGER_BROKER_URL", self.url.as_str()),
            ("MESSENGER_BROKER_MIN_REPLICAS", self.min_replicas.as_str()),
        ];
        let name = format!("server-{}", ["a", "b"][i]);
        let proc = Proc::spawn(&name, &self.bin.join("messenger-server"), &[], &env)?;
        let addr = proc.wait_addr("grpc_addr")?;
        Ok((proc, addr))
    }

    /// kill -9 of replica `i`, then a restart on its port.
    fn kill_and_restart(&mut self, i: usize) -> Result<(), String> {
        self.servers[i].take(); // dropping a Proc kills it with SIGKILL
        let (proc, _) = self.spawn_server(i, self.grpc[i].port())?;
        self.servers[i] = Some(proc);
        Ok(())
    }

    /// Stops everything with SIGTERM; the servers' exit statuses by name.
    pub(crate) fn stop(self) -> Vec<(String, Option<std::process::ExitStatus>)> {
        let mut exits = Vec::new();
        for (i, s) in self.servers.into_iter().enumerate() {
            let name = format!("server-{}", ["a", "b"][i]);
            match s {
                Some(mut p) => {
                    let name = if p.alive() {
                        name
                    } else {
                        format!("{name} (died during the run)")
                    };
                    exits.push((name, p.stop()));
                }
                None => exits.push((format!("{name} (never restarted)"), None)),
            }
        }
        self.topology.stop();
        exits
    }
}

/// One injected fault and what its recovery took.
#[derive(Debug, Serialize)]
pub(crate) struct FaultRecord {
    pub(crate) kind: &'static str,
    pub(crate) at_secs: f64,
    pub(crate) target: String,
    /// Per replica: until a probe through it was acknowledged.
    pub(crate) send_recovery_ms: Vec<f64>,
    /// Until every checked reader held those probes.
    pub(crate) delivery_recovery_ms: Option<f64>,
    /// failover: until every Sentinel named the new primary.
    pub(crate) failover_ms: Option<f64>,
    pub(crate) error: Option<String>,
}

impl FaultRecord {
    pub(crate) fn line(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} ms"));
        let sends: Vec<String> = self.send_recovery_ms.iter().map(|v| ms(Some(*v))).collect();
        format!(
            "{} {}: sends back after {} (server-a, server-b), deliveries after {}{}{}",
            self.kind,
            self.target,
            if sends.is_empty() {
                "-".to_owned()
            } else {
                sends.join(", ")
            },
            ms(self.delivery_recovery_ms),
            self.failover_ms
                .map_or(String::new(), |f| format!(", failover done in {f:.0} ms")),
            self.error
                .as_ref()
                .map_or(String::new(), |e| format!(", FAILED: {e}"))
        )
    }
}

pub(crate) async fn fault(
    kind: Kind,
    cluster: &Arc<Mutex<Cluster>>,
    proxies: &[Proxy],
    rng: &mut Rng,
    at_secs: f64,
    grpc: &[SocketAddr],
    watched: &Watched,
) -> FaultRecord {
    let mut record = FaultRecord {
        kind: kind.name(),
        at_secs,
        target: String::new(),
        send_recovery_ms: Vec::new(),
        delivery_recovery_ms: None,
        failover_ms: None,
        error: None,
    };
    let t0 = Instant::now();
    let tag = format!("{}-{at_secs:.1}", kind.name());
    let step: Result<Option<u16>, String> = match kind {
        Kind::Links => {
            let i = rng.below(proxies.len());
            record.target = format!("client{} <-> server-{}", i + 1, ["a", "b"][i]);
            proxies[i].cut();
            Ok(None)
        }
        Kind::Replica => {
            let i = rng.below(grpc.len());
            record.target = format!("server-{} (kill -9, restart)", ["a", "b"][i]);
            let c = cluster.clone();
            blocking(move || c.lock().expect("never poisoned").kill_and_restart(i))
                .await
                .map(|()| None)
        }
        Kind::Failover => {
            let c = cluster.clone();
            let killed = blocking(move || {
                let mut c = c.lock().expect("never poisoned");
                let old = c.topology.primary()?;
                c.topology.kill(old);
                Ok(old)
            })
            .await;
            killed.map(Some)
        }
    };
    let old = match step {
        Ok(old) => old,
        Err(e) => {
            record.error = Some(e);
            return record;
        }
    };
    let recovery = recover(grpc, watched, &tag, t0, RECOVERY_LIMIT);
    let settle = async {
        let Some(old) = old else { return Ok(()) };
        let c = cluster.clone();
        let limit = Duration::from_millis(6 * FAILOVER_TIMEOUT_MS);
        blocking(move || {
            // Only the topology is touched; the servers stay as they are.
            let mut c = c.lock().expect("never poisoned");
            let new = c.topology.wait_failover(old, limit)?;
            let done = t0.elapsed();
            c.topology.restart(old)?;
            c.topology.wait_settled(limit)?;
            Ok((new, done))
        })
        .await
        .map(|(new, done)| {
            record.target = format!("primary 127.0.0.1:{old} (kill -9) -> 127.0.0.1:{new}");
            record.failover_ms = Some(done.as_secs_f64() * 1e3);
        })
    };
    let (recovered, settled) = tokio::join!(recovery, settle);
    match recovered {
        Ok((send, delivered)) => {
            record.send_recovery_ms = send.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            record.delivery_recovery_ms = Some(delivered.as_secs_f64() * 1e3);
        }
        Err(e) => record.error = Some(e),
    }
    if let Err(e) = settled {
        record.error.get_or_insert(e);
    }
    record
}
