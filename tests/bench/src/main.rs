//! `messenger-bench`: a load generator that speaks only the messenger wire
//! contract, so it can drive any implementation.
//!
//! - [`cli`] ([`cli_spec`]): subcommands and flags.
//! - [`fanout`] ([`publisher`], [`subscriber`], [`delivery`], [`message`]): throughput,
//!   delivery latency and per-stream loss/duplicate/order checks.
//! - [`idle`]: server memory per idle subscriber.
//! - [`http`]: `POST /sendMessage` load on a messenger-client.
//! - [`suite`] ([`procs`], [`chart`], [`targets`], [`markdown`], [`anchors`],
//!   [`broker`], [`broker_wait`], [`telemetry`], [`rounds`]): `make bench`, the standard runs
//!   against freshly started binaries, side by side with the course design,
//!   nats-server and the Redis engine, in alternating rounds, with a summary
//!   (median and spread of each figure), chart and targets.
//! - [`soak`] ([`soak_load`], [`soak_watch`]): `make soak`, long mixed load
//!   with loss/order checks and RSS/fd trends, non-zero exit on a violation.
//! - [`soak_faults`] ([`soak_faults_inject`], [`soak_faults_verdict`],
//!   [`soak_faults_subs`], [`soak_faults_recover`], [`faults_redis`],
//!   [`faults_proxy`]): `make soak-faults`, the soak's load
//!   on two replicas under Redis Sentinel with link cuts, replica kills and
//!   primary failovers; loss, duplicates, order, gaps and recovery times.
//! - [`otlp_sink`]: a span-counting OTLP receiver for the telemetry run.
//! - [`conn`], [`report`], [`procfs`]: connections and probes, report
//!   output, process figures.

mod anchors;
mod broker;
mod broker_wait;
mod chart;
mod cli;
mod cli_spec;
mod conn;
mod delivery;
mod fanout;
mod faults_proxy;
mod faults_redis;
mod http;
mod idle;
mod markdown;
mod message;
mod otlp_sink;
mod pace;
mod procfs;
mod procs;
mod publisher;
mod report;
mod rounds;
mod soak;
mod soak_churn;
mod soak_faults;
mod soak_faults_inject;
mod soak_faults_recover;
mod soak_faults_subs;
mod soak_faults_verdict;
mod soak_load;
mod soak_verdict;
mod soak_watch;
mod subscriber;
mod suite;
mod targets;
mod telemetry;

use cli::{Command, Parsed};
use std::process::ExitCode;

/// Exit code of a usage error, as clap and getopt-style tools use.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match cli::parse_env() {
        Ok(Parsed::Run(command)) => command,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("messenger-bench: usage: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Suite(args) => return exit(suite::run(args)),
        Command::Soak(args) => return exit(soak::run(args)),
        Command::SoakFaults(args) => return exit(soak_faults::run(args)),
        _ => {}
    }
    // The HTTP load is one request in flight per connection: on one thread its
    // connection tasks wake each other without a futex or a cross-CPU wake-up,
    // which halves the bench's CPU per request and leaves the cores to the
    // client and server it measures.
    let mut builder = match command {
        Command::Http(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        match command {
            Command::Fanout(args) => fanout::run(args).await,
            Command::Idle(args) => idle::run(args).await,
            Command::Http(args) => http::run(args).await,
            Command::Suite(_) | Command::Soak(_) | Command::SoakFaults(_) => {
                unreachable!("handled above")
            }
            Command::OtlpSink(args) => otlp_sink::run(args).await,
        }
    });
    exit(result)
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("messenger-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
