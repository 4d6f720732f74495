//! The anchors of `make bench`: the same fan-out load on two other systems,
//! run by the suite right after ours at the same K, so a ratio compares runs
//! taken side by side on the same (shared) machine.
//!
//! - [`reference`]: the course's recommended design (Python grpcio, a thread
//!   pool, one `queue.SimpleQueue` per subscriber), our own implementation in
//!   `tests/bench/reference/server.py`, driven by the same `fanout` run as
//!   ours at K in [`REFERENCE_KS`].
//! - [`nats`]: nats-server core publish/subscribe, driven by
//!   `messenger-bench-nats` (tests/bench/nats) with the same K, publishers,
//!   payload and duration, at K in [`NATS_KS`]. The driver's publishers send
//!   their next message once the first subscriber has the previous one, so
//!   ours is compared in its `--pace first-receipt` run ([`paced`]); its
//!   plain run (paced on `SendMessage`'s answer, more messages in flight) is
//!   reported next to it as an anchor. At [`SAME_RATE`] both run at one fixed
//!   rate ([`at_rate`]), the same offered load.
//!
//! [`rows`] gives the ratios, per round.
//!
//! A missing tool (no grpcio in the Python, no nats-server, no driver) is
//! recorded as that run's error, with what installs it; the suite goes on.

use crate::fanout::LATENCY_FROM;
use crate::procs::{Proc, child};
use crate::suite::Bins;
use crate::targets::{self, FIXED_RATE, errors, get, ratio, row};
use serde_json::{Value, json};
use std::path::Path;

/// K of the reference-server runs.
pub(crate) const REFERENCE_KS: [usize; 2] = [8, 100];
/// K of the nats-server runs.
pub(crate) const NATS_KS: [usize; 2] = [100, 1000];
/// `fanout`'s flags for the NATS driver's pacing rule.
pub(crate) const PACE_AS_NATS: [&str; 2] = ["--pace", "first-receipt"];
/// (K, msg/s) of the same-rate pairs: K=1000 at the fixed-load target's
/// rate, and K=100 at a rate both carry on the 2-core machine (about half
/// of either's closed-loop rate).
pub(crate) const SAME_RATE: [(usize, &str); 2] = [(1000, FIXED_RATE), (100, "1500")];

/// Our run at K with the NATS driver's pacing.
pub(crate) fn paced(k: usize) -> String {
    format!("fanout-k{k}-paced")
}

/// The run of `who` (`fanout` or `nats`) at K and a fixed `rate`.
pub(crate) fn at_rate(who: &str, k: usize, rate: &str) -> String {
    format!("{who}-k{k}-at{rate}")
}
/// The reference server, from this crate's source tree.
const REFERENCE_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/server.py");
/// The NATS driver's binary, next to messenger-bench (`make bench-anchors`).
const NATS_DRIVER: &str = "messenger-bench-nats";
/// nats-server's start-up line that carries its client address.
const NATS_LISTENING: &str = "Listening for client connections on ";

/// The reference server's `fanout` run with `args` (the flags of ours).
pub(crate) fn reference(
    bins: &Bins,
    out: &Path,
    python: &Path,
    name: &str,
    args: &[&str],
) -> Value {
    let server = match Proc::spawn("reference-server", python, &[REFERENCE_SERVER], &[]) {
        Ok(server) => server,
        Err(e) => return json!({ "error": format!("{e} (make bench-anchors installs it)") }),
    };
    let value = match server.wait_addr("grpc_addr") {
        Ok(addr) => {
            let (addr, pid) = (addr.to_string(), server.pid().to_string());
            let common = ["fanout", "--server", &addr, "--server-pid", &pid];
            child(
                &bins.bench,
                out,
                name,
                &[&common[..], args].concat(),
                bins.child_limit,
            )
        }
        Err(e) => json!({ "error": format!("{e} (make bench-anchors installs grpcio)") }),
    };
    server.stop();
    value
}

/// A nats-server run at the fan-out `args` (`--subscribers`, `--publishers`,
/// `--duration`), on a fresh nats-server on a free loopback port.
pub(crate) fn nats(
    bins: &Bins,
    out: &Path,
    nats_server: &Path,
    name: &str,
    args: &[&str],
) -> Value {
    let driver = bins.bench.with_file_name(NATS_DRIVER);
    if !driver.is_file() {
        return json!({ "error": format!("{} is missing: run `make bench-anchors`", driver.display()) });
    }
    let loopback = ["-a", "127.0.0.1", "-p", "-1"];
    let server = match Proc::spawn("nats-server", nats_server, &loopback, &[]) {
        Ok(server) => server,
        Err(e) => return json!({ "error": format!("{e} (make bench-anchors installs it)") }),
    };
    let listening = server.wait_line(&format!("`{NATS_LISTENING}`"), |line| {
        let (_, addr) = line.split_once(NATS_LISTENING)?;
        Some(addr.trim().to_owned())
    });
    let value = match listening {
        Ok(addr) => {
            let (url, pid) = (format!("nats://{addr}"), server.pid().to_string());
            let common = ["--server", &url, "--server-pid", &pid];
            child(
                &driver,
                out,
                name,
                &[&common[..], args].concat(),
                bins.child_limit,
            )
        }
        Err(e) => json!({ "error": e }),
    };
    server.stop();
    value
}

/// The nats-server ratios, per round: same pacing (targets), ours paced on
/// the answer (anchors), and the same fixed rate (target).
pub(crate) fn rows(runs: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    let both = "both paced: next send once the first subscriber has the previous message";
    for k in NATS_KS {
        let (ours, theirs, plain) = (paced(k), format!("nats-k{k}"), format!("fanout-k{k}"));
        let note = errors(runs, &[&ours, &theirs]);
        let per_round =
            |field: &str, of: &str| ratio(get(runs, of, field), get(runs, &theirs, field));
        rows.push(row(
            format!("ours ÷ nats-server core pub/sub: deliveries/s, K={k} ({both})"),
            per_round("/deliveries_per_sec", &ours),
            Some((true, 1.0, "≥ 1.0")),
            note.clone(),
        ));
        rows.push(row(
            format!("ours ÷ nats-server: delivery p99 ({LATENCY_FROM}, both), K={k} ({both})"),
            per_round("/delivery_latency_ms/p99", &ours),
            Some((false, 1.0, "≤ 1.0")),
            note,
        ));
        let note = errors(runs, &[&plain, &theirs]);
        let ack = "ours paced on SendMessage's answer, which comes before any delivery";
        rows.push(row(
            format!("ours ÷ nats-server: deliveries/s, K={k} ({ack})"),
            per_round("/deliveries_per_sec", &plain),
            None,
            note.clone(),
        ));
        rows.push(row(
            format!("ours ÷ nats-server: delivery p99, K={k} ({ack})"),
            per_round("/delivery_latency_ms/p99", &plain),
            None,
            note,
        ));
    }
    for (k, rate) in SAME_RATE {
        let (ours, theirs) = (at_rate("fanout", k, rate), at_rate("nats", k, rate));
        let carried = |run: &str| targets::carried_p99(runs, run, rate);
        let accepted = |run: &str| {
            get(runs, run, "/accepted_per_sec")
                .iter()
                .map(|r| r.map(|r| r.round()))
                .collect::<Vec<_>>()
        };
        rows.push(row(
            format!("ours ÷ nats-server: delivery p99 at a fixed {rate} msg/s, K={k} (same offered load)"),
            ratio(carried(&ours), carried(&theirs)),
            Some((false, 1.0, "≤ 1.0")),
            format!(
                "a round where either side sent or delivered below 95% of the rate has no value; accepted msg/s ours {:?}, nats {:?} {}",
                accepted(&ours),
                accepted(&theirs),
                errors(runs, &[&ours, &theirs])
            ),
        ));
    }
    rows
}
