//! The Redis-engine runs of `make bench` (issue 14): the same fan-out load
//! with the server on a Redis Streams broker (`MESSENGER_BROKER_URL`), each
//! on a fresh `redis-server` on a free loopback port (no persistence), so a
//! ratio to the in-process engine compares runs taken side by side.
//!
//! - `redis-fanout-k{K}` for K in [`REDIS_KS`]: one replica, the flags of
//!   `fanout-k{K}-paced` (`--pace first-receipt`, the rule of the group's
//!   nats-server run), compared with that run.
//! - `redis-replicas-k1000`: two replicas on one stream, subscribers and
//!   publishers alternating between them.
//! - `redis-ceiling`: two replicas, [`CEILING_PUBLISHERS`] publishers and one
//!   subscriber per replica at max rate: the most messages per second the
//!   stream accepted (one chat is one stream, so this is the chat's ceiling).
//! - `fanout-k{K}-p64` then `redis-fanout-k{K}-p64`: both engines with
//!   [`SATURATING_PUBLISHERS`] closed-loop publishers. Four publishers wait
//!   on each send's latency, so their rate compares the engines' latency
//!   (the broker hop is one more round trip); with 64 neither engine waits,
//!   and the rate compares what each delivers at its limit.
//!
//! A missing `redis-server` is recorded as the run's error, with what
//! installs it; the suite goes on.

use crate::procs::{Proc, child};
use crate::rounds::Spread;
use crate::suite::Bins;
use crate::targets::{errors, get, ratio, row};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::Path;

/// K of the one-replica Redis runs (each compared with `fanout-k{K}`).
pub(crate) const REDIS_KS: [usize; 2] = [100, 1000];
/// Publishers of the acceptance-ceiling run.
pub(crate) const CEILING_PUBLISHERS: usize = 32;
/// Closed-loop publishers that keep either engine busy (the saturated pair).
pub(crate) const SATURATING_PUBLISHERS: usize = 64;
/// redis-server's line once it serves clients.
const READY: &str = "Ready to accept connections";

/// Every Redis run name, in the order the suite runs them.
pub(crate) fn run_names() -> Vec<String> {
    let mut names: Vec<String> = REDIS_KS
        .iter()
        .map(|k| format!("redis-fanout-k{k}"))
        .collect();
    names.extend(["redis-replicas-k1000", "redis-ceiling"].map(String::from));
    for k in REDIS_KS {
        let p = SATURATING_PUBLISHERS;
        names.extend([
            format!("fanout-k{k}-p{p}"),
            format!("redis-fanout-k{k}-p{p}"),
        ]);
    }
    names
}

/// A `fanout` run with `args` against `replicas` servers (1 or 2) sharing
/// one stream on a fresh redis-server.
pub(crate) fn fanout(
    bins: &Bins,
    out: &Path,
    redis_server: &Path,
    name: &str,
    replicas: usize,
    args: &[&str],
) -> Value {
    let (redis, port) = match redis_node(redis_server, "redis-server", &[]) {
        Ok(redis) => redis,
        Err(e) => return json!({ "error": e }),
    };
    let url = format!("redis://127.0.0.1:{port}");
    let value = fanout_on(bins, out, name, &url, &[], replicas, args);
    redis.stop();
    value
}

/// A fresh `redis-server` without persistence on a free loopback port, with
/// `extra` arguments, once it serves clients: the process and its port.
pub(crate) fn redis_node(
    redis_server: &Path,
    label: &str,
    extra: &[&str],
) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let port_arg = port.to_string();
    let mut redis_args = vec![
        "--port",
        &port_arg,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    redis_args.extend_from_slice(extra);
    let redis = Proc::spawn(label, redis_server, &redis_args, &[])
        .map_err(|e| format!("{e} (Debian: apt-get install redis-server)"))?;
    redis.wait_line(&format!("`{READY}`"), |l| {
        l.contains(READY).then(String::new)
    })?;
    Ok((redis, port))
}

/// A `fanout` run with `args` against `replicas` servers (1 or 2) on the
/// broker at `url`, each with `extra_env`.
pub(crate) fn fanout_on(
    bins: &Bins,
    out: &Path,
    name: &str,
    url: &str,
    extra_env: &[(&str, &str)],
    replicas: usize,
    args: &[&str],
) -> Value {
    let mut env = vec![
        ("MESSENGER_SERVER_HOST", "127.0.0.1"),
        ("MESSENGER_SERVER_PORT", "0"),
        ("MESSENGER_METRICS_PORT", "0"),
        ("MESSENGER_BROKER_URL", url),
    ];
    env.extend_from_slice(extra_env);
    let mut servers = Vec::new();
    for i in 0..replicas {
        let spawned = Proc::spawn(&format!("messenger-server-{i}"), &bins.server, &[], &env)
            .and_then(|p| p.wait_addr("grpc_addr").map(|addr| (p, addr.to_string())));
        match spawned {
            Ok(server) => servers.push(server),
            Err(e) => return json!({ "error": e }),
        }
    }
    let pids: Vec<String> = servers.iter().map(|(p, _)| p.pid().to_string()).collect();
    let mut flags = vec![
        "fanout",
        "--server",
        &servers[0].1,
        "--server-pid",
        &pids[0],
    ];
    if let Some((_, addr)) = servers.get(1) {
        flags.extend(["--replica", addr.as_str(), "--replica-pid", &pids[1]]);
    }
    flags.extend_from_slice(args);
    let value = child(&bins.bench, out, name, &flags, bins.child_limit);
    for (server, _) in servers {
        server.stop();
    }
    value
}

/// A port nothing listens on now (bound, then released): redis-server
/// takes no port 0.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

/// The Redis figures of issue 14's benchmark, as summary rows (no targets
/// but the ratio's ≥ 0.8).
pub(crate) fn rows(runs: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for k in REDIS_KS {
        // Both paced as the NATS driver (the three sides of the group match).
        let (ours, redis) = (crate::anchors::paced(k), format!("redis-fanout-k{k}"));
        let note = errors(runs, &[&ours, &redis]);
        rows.push(row(
            format!("Redis engine ÷ in-process: deliveries/s, K={k}, one replica"),
            ratio(
                get(runs, &redis, "/deliveries_per_sec"),
                get(runs, &ours, "/deliveries_per_sec"),
            ),
            Some((true, 0.8, "≥ 0.8")),
            note.clone(),
        ));
        for p in ["p50", "p99"] {
            rows.push(row(
                format!(
                    "SendMessage {p} with the broker hop, K={k} (ms; in-process: {})",
                    Spread::of(&get(runs, &ours, &format!("/send_latency_ms/{p}")))
                        .map_or("–".to_owned(), |s| format!("median {:.2}", s.median))
                ),
                get(runs, &redis, &format!("/send_latency_ms/{p}")),
                None,
                note.clone(),
            ));
        }
    }
    for k in REDIS_KS {
        let p = SATURATING_PUBLISHERS;
        let (ours, redis) = (
            format!("fanout-k{k}-p{p}"),
            format!("redis-fanout-k{k}-p{p}"),
        );
        rows.push(row(
            format!("Redis engine ÷ in-process: deliveries/s, K={k}, one replica, {p} publishers (both saturated)"),
            ratio(
                get(runs, &redis, "/deliveries_per_sec"),
                get(runs, &ours, "/deliveries_per_sec"),
            ),
            Some((true, 0.8, "≥ 0.8")),
            errors(runs, &[&ours, &redis]),
        ));
    }
    let two = "redis-replicas-k1000";
    rows.push(row(
        "deliveries/s, K=1000 spread over 2 replicas on one stream".into(),
        get(runs, two, "/deliveries_per_sec"),
        None,
        format!(
            "lost {} / duplicated {} / reordered {} {}",
            runs[two]["lost"],
            runs[two]["duplicated"],
            runs[two]["reordered"],
            errors(runs, &[two])
        ),
    ));
    rows.push(row(
        format!("messages/s one stream accepted ({CEILING_PUBLISHERS} publishers over 2 replicas)"),
        get(runs, "redis-ceiling", "/accepted_per_sec"),
        None,
        errors(runs, &["redis-ceiling"]),
    ));
    rows
}
