//! Operations: what an operator reads, none of it on the path of a message
//! except the spans and counters it records.
//!
//! - [`metrics`]: every exported metric: names, descriptions, buckets,
//!   handles; the `/metrics` endpoint.
//! - [`trace`]: the `fanout` and per-subscriber `deliver` spans, and the
//!   broker's `broker.publish`/`broker.receive`.
//! - [`debug`]: `GET /debug/subscribers` and the SIGUSR2 dump.
//! - [`healthcheck`]: the `healthcheck` subcommand (container probe).

pub(crate) mod debug;
pub mod healthcheck;
pub(crate) mod metrics;
pub(crate) mod trace;
