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
//!   payload and duration, at K in [`NATS_KS`].
//!
//! A missing tool (no grpcio in the Python, no nats-server, no driver) is
//! recorded as that run's error, with what installs it; the suite goes on.

use crate::procs::{Proc, child};
use crate::suite::Bins;
use serde_json::{Value, json};
use std::path::Path;

/// K of the reference-server runs.
pub(crate) const REFERENCE_KS: [usize; 2] = [8, 100];
/// K of the nats-server runs.
pub(crate) const NATS_KS: [usize; 2] = [100, 1000];
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
