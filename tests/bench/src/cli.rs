//! Command-line interface: one subcommand per scenario, each with `--json`.
//!
//! Every scenario prints a human table to stdout and, with `--json FILE`,
//! writes the same figures as JSON. Usage errors exit with code 2 (clap).

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "messenger-bench",
    about = "Benchmarks any server that speaks the messenger wire contract"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// K subscribers, P publishers: throughput, delivery latency, loss checks.
    Fanout(FanoutArgs),
    /// N idle subscribers: the server's memory per subscriber.
    Idle(IdleArgs),
    /// Keep-alive `POST /sendMessage` load on a messenger-client.
    Http(HttpArgs),
    /// The standard suite against freshly started release binaries.
    Suite(SuiteArgs),
    /// Long mixed load against fresh release binaries; fails on any lost,
    /// duplicated or reordered message, or growing RSS or fds.
    Soak(SoakArgs),
    /// An OTLP/gRPC trace receiver that accepts and counts spans.
    #[command(hide = true)]
    OtlpSink(OtlpSinkArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// Server gRPC address, `host:port`.
    #[arg(long)]
    pub(crate) server: SocketAddr,
    /// Number of subscribers (K).
    #[arg(long, default_value_t = 1)]
    pub(crate) subscribers: usize,
    /// Number of publishers (P), each on its own connection.
    #[arg(long, default_value_t = 4)]
    pub(crate) publishers: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Total messages per second over all publishers; unset = as fast as accepted.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// HTTP/2 connections the subscribers share (default: one per subscriber).
    #[arg(long)]
    pub(crate) connections: Option<usize>,
    /// Bytes of `text` per message (at least the 17-byte id header).
    #[arg(long, default_value_t = 64)]
    pub(crate) payload: usize,
    /// Server process to sample CPU and RSS from (/proc/PID).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Write the report JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    /// Server gRPC address, `host:port`.
    #[arg(long)]
    pub(crate) server: SocketAddr,
    /// Number of idle subscribers (N).
    #[arg(long)]
    pub(crate) subscribers: usize,
    /// HTTP/2 connections they share (default: one per subscriber).
    #[arg(long)]
    pub(crate) connections: Option<usize>,
    /// Server process whose RSS is measured.
    #[arg(long)]
    pub(crate) server_pid: u32,
    /// Write the report JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct HttpArgs {
    /// messenger-client HTTP address, `host:port`.
    #[arg(long)]
    pub(crate) client: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 10)]
    pub(crate) connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// messenger-client process to read CPU time from (/proc/PID).
    #[arg(long)]
    pub(crate) client_pid: Option<u32>,
    /// messenger-server process to read CPU time from (/proc/PID).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Write the report JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SuiteArgs {
    /// Directory holding messenger-server and messenger-client.
    #[arg(long, default_value = "target/release")]
    pub(crate) bin_dir: PathBuf,
    /// Directory for the JSON reports and chart.svg.
    #[arg(long, default_value = "target/bench")]
    pub(crate) out: PathBuf,
    /// Seconds per fan-out run.
    #[arg(long, default_value_t = 8.0)]
    pub(crate) duration: f64,
    /// Publishers per fan-out run.
    #[arg(long, default_value_t = 4)]
    pub(crate) publishers: usize,
    /// Idle subscribers.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) idle_subscribers: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SoakArgs {
    /// Directory holding messenger-server and messenger-client.
    #[arg(long, default_value = "target/release")]
    pub(crate) bin_dir: PathBuf,
    /// Seconds of load (warm-up is the first quarter).
    #[arg(long, default_value_t = 600.0)]
    pub(crate) duration: f64,
    /// gRPC publishers.
    #[arg(long, default_value_t = 2)]
    pub(crate) publishers: usize,
    /// Total gRPC messages per second.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) rate: f64,
    /// `POST /sendMessage` per second through each of the two clients.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) http_rate: f64,
    /// Stable gRPC subscribers, each on its own connection.
    #[arg(long, default_value_t = 4)]
    pub(crate) subscribers: usize,
    /// Tasks opening and dropping short-lived streams.
    #[arg(long, default_value_t = 4)]
    pub(crate) churners: usize,
    /// Bytes of `text` per gRPC message.
    #[arg(long, default_value_t = 128)]
    pub(crate) payload: usize,
    /// Write the report JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OtlpSinkArgs {
    /// Listen address; port 0 picks a free one (logged as `otlp_addr=`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
}

/// `secs` as a positive duration, or a usage error.
pub(crate) fn duration(secs: f64) -> Result<std::time::Duration, String> {
    if secs.is_finite() && secs > 0.0 {
        Ok(std::time::Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "--duration must be a positive number of seconds, not {secs}"
        ))
    }
}
