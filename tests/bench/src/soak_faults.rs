//! `soak-faults` (`make soak-faults`; 60 s in `make test`): the soak's mixed
//! load on two server replicas under Redis Sentinel, with faults injected at
//! random intervals, then a verdict ([`crate::soak_faults_verdict`]).
//!
//! Topology ([`crate::faults_redis`]): a Redis primary, two replicas and three
//! Sentinels on free 127.0.0.1 ports; two release server replicas on them
//! (`MESSENGER_BROKER_URL=redis+sentinel://...`, `MESSENGER_BROKER_MIN_REPLICAS`
//! from `--min-replicas`); client1 on replica A and client2 on replica B, each
//! through a [`Proxy`] whose links can be cut.
//!
//! Load: P gRPC publishers (alternating between the replicas, one send in
//! flight each, never resending) and one HTTP sender through each client.
//! Checked readers: both clients' buffers, and `--subscribers` resuming gRPC
//! subscribers per replica through its proxy ([`crate::soak_faults_subs`]).
//!
//! Faults ([`crate::soak_faults_inject`]), one at a time, each followed by its recovery and a
//! pause of 0.5..1.5 × `--fault-every`, the kinds in a fresh random order
//! each round:
//! - `links`: every connection of one client to its replica is reset;
//! - `replica`: one server replica is killed with SIGKILL and restarted on
//!   its port;
//! - `failover`: the Redis primary is killed with SIGKILL; once the
//!   Sentinels have promoted a replica it is restarted, and the next fault
//!   waits until it is a replica again.
//!
//! Recovery of a fault ([`crate::soak_faults_recover`]): from its injection
//! until a probe sent through each replica is acknowledged (send recovery)
//! and every checked reader holds both probes (delivery recovery). Readiness
//! at start and the drain at the end wait on the same probes: the order is
//! total, so once a reader holds the final probe it holds everything
//! acknowledged before it.

use crate::cli::{FaultsArgs, duration};
use crate::conn;
use crate::faults_proxy::Proxy;
use crate::faults_redis::Topology;
use crate::procs::Proc;
use crate::publisher::{self, Plan, PubStats};
use crate::soak_faults_inject::{self as inject, Cluster, Kind, Rng};
use crate::soak_faults_recover::{Watched, recover};
use crate::soak_faults_subs::{self as subs, STREAMS_PER_CONNECTION};
use crate::soak_faults_verdict::{ClientCheck, verdict};
use crate::soak_load::{self, Probes, metric, scrape};
use crate::subscriber::Progress;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest recovery of one fault before the run fails.
pub(crate) const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn run(args: FaultsArgs) -> Result<(), String> {
    let run_for = duration(args.duration)?;
    let kinds = Kind::parse_list(&args.faults)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let dir = std::env::temp_dir().join(format!("messenger-soak-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "soak-faults: {:.0} s, faults {}, MIN_REPLICAS {}, {} gRPC subscribers per replica, seed {seed}",
        run_for.as_secs_f64(),
        args.faults,
        args.min_replicas,
        args.subscribers
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = runtime.block_on(soak(&args, run_for, &kinds, seed, &dir));
    let _removed = std::fs::remove_dir_all(&dir);
    let report = result?;
    crate::report::emit("soak-faults", &report, args.json.as_deref())?;
    if report.violations.is_empty() {
        println!(
            "soak-faults passed: {} faults (at most {:.1} s apart), {} deliveries checked ({:.0}/s; 2 client buffers and {} gRPC subscribers), {} lost, 0 duplicated, 0 reordered, {} gaps reported",
            report.faults.len(),
            report.max_fault_interval_secs,
            report.deliveries_checked,
            report.deliveries_checked_per_sec,
            report.grpc_subscribers,
            report.lost,
            report.gaps_reported
        );
        Ok(())
    } else {
        Err(format!(
            "soak-faults failed:\n  {}",
            report.violations.join("\n  ")
        ))
    }
}

async fn soak(
    args: &FaultsArgs,
    run_for: Duration,
    kinds: &[Kind],
    seed: u64,
    dir: &std::path::Path,
) -> Result<crate::soak_faults_verdict::FaultsReport, String> {
    let (redis, dir_owned) = (args.redis_server.clone(), dir.to_owned());
    let topology = blocking(move || Topology::start(&redis, &dir_owned)).await?;
    let url = if kinds.contains(&Kind::Failover) {
        topology.sentinel_url()
    } else {
        topology.primary_url()
    };
    let bin = args.bin_dir.clone();
    let min = args.min_replicas.to_string();
    let cluster = blocking(move || Cluster::start(topology, bin, url, min)).await?;
    let grpc = cluster.grpc.clone();
    let cluster = Arc::new(Mutex::new(cluster));
    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    let mut http = Vec::new();
    for (i, addr) in grpc.iter().enumerate() {
        let proxy = Proxy::start(*addr).await?;
        let upstream = proxy.addr.to_string();
        let env = [
            ("MESSENGER_SERVER_ADDR", upstream.as_str()),
            ("MESSENGER_HTTP_HOST", "127.0.0.1"),
            ("MESSENGER_HTTP_PORT", "0"),
        ];
        let client = Proc::spawn(
            &format!("client{}", i + 1),
            &args.bin_dir.join("messenger-client"),
            &[],
            &env,
        )?;
        http.push(client.wait_addr("http_addr")?);
        clients.push(client);
        proxies.push(proxy);
    }

    let pubs_n = args.publishers.max(1);
    let publishers = pubs_n + http.len();
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let probes: Vec<Probes> = http.iter().map(|_| Probes::default()).collect();
    let progress: Vec<Arc<Progress>> = http.iter().map(|_| Arc::default()).collect();
    let flushers: Vec<_> = http
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            tokio::spawn(soak_load::client_flusher(
                *addr,
                publishers,
                progress[i].clone(),
                stop.clone(),
                Some(probes[i].clone()),
            ))
        })
        .collect();
    let mut watched = Watched {
        clients: probes,
        subscribers: Vec::new(),
    };
    let mut checkers = Vec::new();
    for proxy in &proxies {
        let groups = args.subscribers.div_ceil(STREAMS_PER_CONNECTION);
        let channels = conn::connect_many(proxy.addr, groups).await?;
        for n in 0..args.subscribers {
            let seen = Arc::new(subs::Seen::default());
            watched.subscribers.push(seen.clone());
            let channel = channels[n % groups].clone();
            checkers.push(tokio::spawn(subs::run(
                channel,
                publishers,
                seen,
                stop.clone(),
            )));
        }
    }
    subscribed(&watched.subscribers, RECOVERY_LIMIT).await?;
    recover(&grpc, &watched, "ready", Instant::now(), RECOVERY_LIMIT)
        .await
        .map_err(|e| format!("not ready: {e}"))?;

    let start = Instant::now();
    let end = start + run_for;
    let plan = Plan {
        start,
        end,
        rate: Some(args.rate.max(1e-3)),
        publishers: pubs_n,
        payload: args.payload,
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for id in 0..pubs_n {
        let channel = conn::connect(grpc[id % grpc.len()]).await?;
        senders.push(tokio::spawn(publisher::run(
            id,
            channel,
            plan,
            accepted.clone(),
        )));
    }
    for (i, addr) in http.iter().enumerate() {
        senders.push(tokio::spawn(soak_load::http_sender(
            *addr,
            pubs_n + i,
            args.http_rate,
            end,
        )));
    }

    let mut rng = Rng::new(seed);
    let mut faults = Vec::new();
    let mut violations = Vec::new();
    'rounds: loop {
        for kind in rng.shuffled(kinds) {
            let pause = args.fault_every * (0.5 + rng.unit());
            if Instant::now() + Duration::from_secs_f64(pause) >= end {
                break 'rounds;
            }
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
            let at = start.elapsed().as_secs_f64();
            let record =
                inject::fault(kind, &cluster, &proxies, &mut rng, at, &grpc, &watched).await;
            println!("soak-faults {at:>6.1}s: {}", record.line());
            if let Some(e) = &record.error {
                violations.push(format!("{} at {at:.1} s: {e}", kind.name()));
                faults.push(record);
                break 'rounds;
            }
            faults.push(record);
        }
    }

    let mut pub_stats: Vec<PubStats> = Vec::new();
    for s in senders {
        pub_stats.push(s.await.map_err(|e| format!("sender task: {e}"))?);
    }
    let drained = recover(&grpc, &watched, "final", Instant::now(), RECOVERY_LIMIT).await;
    if let Err(e) = &drained {
        violations.push(format!(
            "drain: the final probes did not reach every reader: {e}"
        ));
    }
    stop.cancel();
    let mut subscribers = Vec::new();
    for (n, task) in checkers.into_iter().enumerate() {
        let c = task.await.map_err(|e| format!("subscriber task: {e}"))?;
        let (replica, k) = (n / args.subscribers.max(1), n % args.subscribers.max(1));
        let name = format!("server-{}-subscriber{}", ["a", "b"][replica], k + 1);
        subscribers.push(ClientCheck::of_subscriber(name, &c, &pub_stats));
    }
    let mut checked = Vec::new();
    for (i, task) in flushers.into_iter().enumerate() {
        let s = task.await.map_err(|e| format!("flusher task: {e}"))?;
        let text = scrape(http[i]).await?;
        let gaps = metric(&text, "messenger_client_resumes_total{result=\"gap\"}").unwrap_or(0.0);
        checked.push(ClientCheck::of(
            format!("client{}-buffer", i + 1),
            &s,
            &pub_stats,
            gaps as u64,
        ));
    }
    drop(proxies);
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| "cluster still shared at the end".to_owned())?
        .into_inner()
        .map_err(|_| "cluster lock poisoned".to_owned())?;
    let mut exits = blocking(move || Ok(cluster.stop())).await?;
    for (i, c) in clients.into_iter().enumerate() {
        exits.push((format!("client{}", i + 1), c.stop()));
    }
    for (name, status) in exits {
        if !status.is_some_and(|s| s.success()) {
            violations.push(format!("{name} did not exit 0 on SIGTERM: {status:?}"));
        }
    }
    Ok(verdict(
        args,
        run_for,
        seed,
        kinds,
        &pub_stats,
        pubs_n,
        [checked, subscribers],
        faults,
        violations,
    ))
}

/// Waits until every subscriber's first subscription is registered: the
/// readiness probes are sent after it, so every subscriber receives them.
async fn subscribed(subscribers: &[Arc<subs::Seen>], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let waiting = subscribers
            .iter()
            .filter(|s| !s.subscribed.load(std::sync::atomic::Ordering::Acquire))
            .count();
        if waiting == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready: {waiting} of {} gRPC subscribers not subscribed within {limit:?}",
                subscribers.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a blocking step (processes, redis-cli) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blocking task: {e}"))?
}
