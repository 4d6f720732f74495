//! The durability pair of `make bench` (issue 25): the Redis engine with
//! `MESSENGER_BROKER_MIN_REPLICAS` 0 and 1, side by side, on the same
//! topology: a fresh Redis primary and one replica (`--replicaof`), both
//! Debian's `redis-server` without persistence on free loopback ports, each
//! in a fresh directory of its own (a replica writes the primary's snapshot
//! there on sync, and would load an old one at start), the replica in sync
//! before the run ([`SYNCED`]), and one server replica on the primary
//! (`redis://`).
//!
//! With 1, each send is acknowledged only after `WAIT 1` confirms the Redis
//! replica holds it: one more round trip per publishing batch. The fan-out
//! load is `redis-fanout-k{K}`'s ([`K`]): the publishers keep one send in
//! flight each, so their rate follows the send latency and the ratio
//! deliveries/s 1 ÷ 0 is what the setting costs. The two sides alternate in
//! `--rounds` rounds ([`crate::rounds`]); each run starts its own topology.

use crate::broker::{fanout_on, redis_node};
use crate::suite::Bins;
use crate::targets::{errors, get, ratio, row};
use serde_json::{Value, json};
use std::path::Path;

/// Subscribers of the pair's runs (as `redis-fanout-k100`).
pub(crate) const K: usize = 100;
/// The replica's log line once its first sync with the primary is done.
const SYNCED: &str = "MASTER <-> REPLICA sync: Finished with success";

/// The run of `MESSENGER_BROKER_MIN_REPLICAS` `min`.
pub(crate) fn run_name(min: u64) -> String {
    format!("redis-min-replicas{min}-k{K}")
}

/// Both run names, in the order of a round.
pub(crate) fn run_names() -> Vec<String> {
    vec![run_name(0), run_name(1)]
}

/// One run with `MESSENGER_BROKER_MIN_REPLICAS=min` on a fresh primary and
/// replica.
pub(crate) fn fanout(
    bins: &Bins,
    out: &Path,
    redis_server: &Path,
    name: &str,
    min: u64,
    args: &[&str],
) -> Value {
    let dir = std::env::temp_dir().join(format!("messenger-bench-{name}-{}", std::process::id()));
    let value = on_pair(bins, out, redis_server, &dir, name, min, args);
    let _removed = std::fs::remove_dir_all(&dir);
    value
}

fn on_pair(
    bins: &Bins,
    out: &Path,
    redis_server: &Path,
    dir: &Path,
    name: &str,
    min: u64,
    args: &[&str],
) -> Value {
    let mut dirs = Vec::new();
    for node in ["primary", "replica"] {
        let d = dir.join(node);
        if let Err(e) = std::fs::create_dir_all(&d) {
            return json!({ "error": format!("{}: {e}", d.display()) });
        }
        dirs.push(d.to_string_lossy().into_owned());
    }
    let at = |i: usize| ["--dir", dirs[i].as_str()];
    let (primary, port) = match redis_node(redis_server, "redis-primary", &at(0)) {
        Ok(node) => node,
        Err(e) => return json!({ "error": e }),
    };
    let port_arg = port.to_string();
    let of = [&at(1)[..], &["--replicaof", "127.0.0.1", port_arg.as_str()]].concat();
    let synced = redis_node(redis_server, "redis-replica", &of).and_then(|(replica, _)| {
        replica.wait_line(&format!("`{SYNCED}`"), |l| {
            l.contains(SYNCED).then(String::new)
        })?;
        Ok(replica)
    });
    let replica = match synced {
        Ok(replica) => replica,
        Err(e) => return json!({ "error": e }),
    };
    let url = format!("redis://127.0.0.1:{port}");
    let min_arg = min.to_string();
    let env = [("MESSENGER_BROKER_MIN_REPLICAS", min_arg.as_str())];
    let value = fanout_on(bins, out, name, &url, &env, 1, args);
    replica.stop();
    primary.stop();
    value
}

/// The pair's summary rows: each side's deliveries/s and send latency, and
/// the ratio 1 ÷ 0 per round (no targets).
pub(crate) fn rows(runs: &Value) -> Vec<Value> {
    let (zero, one) = (run_name(0), run_name(1));
    let note = errors(runs, &[&zero, &one]);
    let topology = "Redis primary + 1 replica, one server replica";
    let mut rows = Vec::new();
    for (min, run) in [(0, &zero), (1, &one)] {
        rows.push(row(
            format!("Redis MIN_REPLICAS {min}: deliveries/s, K={K} ({topology})"),
            get(runs, run, "/deliveries_per_sec"),
            None,
            note.clone(),
        ));
    }
    rows.push(row(
        format!("Redis MIN_REPLICAS 1 ÷ 0: deliveries/s, K={K} (per round)"),
        ratio(
            get(runs, &one, "/deliveries_per_sec"),
            get(runs, &zero, "/deliveries_per_sec"),
        ),
        None,
        note.clone(),
    ));
    for p in ["p50", "p99"] {
        let field = format!("/send_latency_ms/{p}");
        for (min, run) in [(0, &zero), (1, &one)] {
            rows.push(row(
                format!("SendMessage {p}, Redis MIN_REPLICAS {min}, K={K} (ms)"),
                get(runs, run, &field),
                None,
                note.clone(),
            ));
        }
        rows.push(row(
            format!("SendMessage {p}, Redis MIN_REPLICAS 1 ÷ 0, K={K} (per round)"),
            ratio(get(runs, &one, &field), get(runs, &zero, &field)),
            None,
            note.clone(),
        ));
    }
    rows
}
