//! The subcommands' flags, help text and defaults: the one source that
//! [`crate::cli`] parses against and prints as `--help`.
//!
//! Names and defaults are an interface: the Makefile, `tests/smoke.rs`, the
//! suite (which runs this binary as its children) and the soak use them.

/// One `--name VALUE` flag.
#[derive(Debug)]
pub(crate) struct Flag {
    pub(crate) name: &'static str,
    /// Placeholder shown in the help, e.g. `HOST:PORT`.
    pub(crate) value: &'static str,
    pub(crate) help: &'static str,
    /// Used when the flag is absent; `None` = optional or required (the
    /// subcommand's parser decides which).
    pub(crate) default: Option<&'static str>,
}

/// One subcommand.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    /// Left out of the top-level usage (still has its own `--help`).
    pub(crate) hidden: bool,
    pub(crate) flags: &'static [Flag],
}

const fn flag(
    name: &'static str,
    value: &'static str,
    help: &'static str,
    default: Option<&'static str>,
) -> Flag {
    Flag {
        name,
        value,
        help,
        default,
    }
}

const JSON: Flag = flag("json", "FILE", "Write the report JSON here", None);
const SERVER: Flag = flag(
    "server",
    "HOST:PORT",
    "Server gRPC address (required)",
    None,
);
const BIN_DIR: Flag = flag(
    "bin-dir",
    "DIR",
    "Directory holding messenger-server and messenger-client",
    Some("target/release"),
);

pub(crate) const SPECS: [Spec; 7] = [
    Spec {
        name: "fanout",
        about: "K subscribers, P publishers: throughput, delivery latency, loss checks",
        hidden: false,
        flags: &[
            SERVER,
            flag("subscribers", "K", "Number of subscribers", Some("1")),
            flag(
                "publishers",
                "P",
                "Publishers, each on its own connection",
                Some("4"),
            ),
            flag("duration", "SECS", "Seconds of measured load", Some("10")),
            flag(
                "rate",
                "MSG/S",
                "Total messages per second over all publishers, their schedules staggered into one uniform rate (default: as fast as --pace allows)",
                None,
            ),
            flag(
                "pace",
                "RULE",
                "When a publisher sends its next message: ack (once SendMessage is acknowledged) or first-receipt (also once subscriber 0 has the previous one, as messenger-bench-nats)",
                Some("ack"),
            ),
            flag(
                "connections",
                "C",
                "HTTP/2 connections the subscribers share (default: one per subscriber)",
                None,
            ),
            flag(
                "payload",
                "BYTES",
                "Bytes of `text` per message (at least the 34-byte header: id and send stamp)",
                Some("64"),
            ),
            flag(
                "server-pid",
                "PID",
                "Server process to sample CPU and RSS from (/proc/PID)",
                None,
            ),
            flag(
                "replica",
                "HOST:PORT",
                "A second replica of the same chat (one broker stream): connections alternate between --server and it",
                None,
            ),
            flag(
                "replica-pid",
                "PID",
                "The replica's process: its CPU is added to the server's, its peak RSS counted if larger",
                None,
            ),
            JSON,
        ],
    },
    Spec {
        name: "idle",
        about: "N idle subscribers: the server's memory per subscriber",
        hidden: false,
        flags: &[
            SERVER,
            flag(
                "subscribers",
                "N",
                "Number of idle subscribers (required)",
                None,
            ),
            flag(
                "connections",
                "C",
                "HTTP/2 connections they share (default: one per subscriber)",
                None,
            ),
            flag(
                "server-pid",
                "PID",
                "Server process whose RSS is measured (required)",
                None,
            ),
            JSON,
        ],
    },
    Spec {
        name: "http",
        about: "Keep-alive POST /sendMessage load on a messenger-client",
        hidden: false,
        flags: &[
            flag(
                "client",
                "HOST:PORT",
                "messenger-client HTTP address (required)",
                None,
            ),
            flag(
                "connections",
                "C",
                "Keep-alive connections, each with one request in flight",
                Some("10"),
            ),
            flag("duration", "SECS", "Seconds of load", Some("10")),
            flag(
                "client-pid",
                "PID",
                "messenger-client process to read CPU time from",
                None,
            ),
            flag(
                "server-pid",
                "PID",
                "messenger-server process to read CPU time from",
                None,
            ),
            JSON,
        ],
    },
    Spec {
        name: "suite",
        about: "The standard suite against freshly started release binaries, with its anchors",
        hidden: false,
        flags: &[
            BIN_DIR,
            flag(
                "out",
                "DIR",
                "Directory for the JSON reports, chart.svg",
                Some("target/bench"),
            ),
            flag("duration", "SECS", "Seconds per fan-out run", Some("8")),
            flag("publishers", "P", "Publishers per fan-out run", Some("4")),
            flag(
                "idle-subscribers",
                "N",
                "Idle subscribers (one connection each)",
                Some("10000"),
            ),
            flag(
                "rounds",
                "N",
                "Rounds of each side-by-side group (ours/NATS/Redis, tracing on/off), rotating which side goes first (A B, B A, ...)",
                Some("3"),
            ),
            flag(
                "python",
                "PATH",
                "Python with grpcio for the course-design anchor (tests/bench/reference)",
                Some(".venv/bin/python"),
            ),
            flag(
                "nats-server",
                "PATH",
                "nats-server for the broker anchor (driven by messenger-bench-nats)",
                Some("nats-server"),
            ),
            flag(
                "redis-server",
                "PATH",
                "redis-server for the Redis-engine runs (each on a free loopback port)",
                Some("redis-server"),
            ),
            flag(
                "only",
                "GROUPS",
                "Run only these groups, comma-separated: fanout, redis-replicas, saturated, fixed-rate, redis-min-replicas, idle, http, telemetry (default: all)",
                None,
            ),
        ],
    },
    Spec {
        name: "soak",
        about: "Long mixed load against fresh release binaries; fails on any lost, duplicated or reordered message, or growing RSS or fds",
        hidden: false,
        flags: &[
            BIN_DIR,
            flag(
                "duration",
                "SECS",
                "Seconds of load (warm-up is the first quarter)",
                Some("600"),
            ),
            flag("publishers", "P", "gRPC publishers", Some("2")),
            flag(
                "rate",
                "MSG/S",
                "Total gRPC messages per second",
                Some("200"),
            ),
            flag(
                "http-rate",
                "REQ/S",
                "POST /sendMessage per second through each of the two clients",
                Some("20"),
            ),
            flag(
                "subscribers",
                "K",
                "Stable gRPC subscribers, each on its own connection",
                Some("4"),
            ),
            flag(
                "churners",
                "N",
                "Tasks opening and dropping short-lived streams",
                Some("4"),
            ),
            flag(
                "payload",
                "BYTES",
                "Bytes of `text` per gRPC message",
                Some("128"),
            ),
            JSON,
        ],
    },
    Spec {
        name: "soak-faults",
        about: "The soak's mixed load on two replicas under Redis Sentinel with faults injected (link cuts, replica kill -9, primary failover); fails on any acknowledged message lost (with --min-replicas 0: lost without a reported gap), duplicated or reordered",
        hidden: false,
        flags: &[
            BIN_DIR,
            flag("duration", "SECS", "Seconds of load and faults", Some("60")),
            flag(
                "publishers",
                "P",
                "gRPC publishers, alternating between the replicas",
                Some("4"),
            ),
            flag(
                "rate",
                "MSG/S",
                "Total gRPC messages per second",
                Some("1000"),
            ),
            flag(
                "http-rate",
                "REQ/S",
                "POST /sendMessage per second through each of the two clients",
                Some("20"),
            ),
            flag(
                "payload",
                "BYTES",
                "Bytes of `text` per gRPC message",
                Some("128"),
            ),
            flag(
                "subscribers",
                "N",
                "Checked gRPC subscribers per server replica (ReadMessages with offsets, through its proxy, resuming after every break)",
                Some("4"),
            ),
            flag(
                "min-replicas",
                "N",
                "MESSENGER_BROKER_MIN_REPLICAS of both server replicas",
                Some("1"),
            ),
            flag(
                "fault-every",
                "SECS",
                "Mean pause between one fault's recovery and the next fault (0.5..1.5 times this)",
                Some("5"),
            ),
            flag(
                "faults",
                "LIST",
                "Fault kinds, comma-separated: links, replica, failover",
                Some("links,replica,failover"),
            ),
            flag(
                "seed",
                "N",
                "Seed of the fault schedule (default: the clock; printed)",
                None,
            ),
            flag(
                "redis-server",
                "PATH",
                "redis-server for the primary, its replicas and the Sentinels (--sentinel)",
                Some("redis-server"),
            ),
            JSON,
        ],
    },
    Spec {
        name: "otlp-sink",
        about: "An OTLP/gRPC trace receiver that accepts and counts spans",
        hidden: true,
        flags: &[flag(
            "listen",
            "HOST:PORT",
            "Listen address; port 0 picks a free one (logged as `otlp_addr=`)",
            Some("127.0.0.1:0"),
        )],
    },
];

/// The top-level usage: every visible subcommand.
pub(crate) fn usage() -> String {
    let mut out = String::from(
        "Benchmarks any server that speaks the messenger wire contract\n\n\
         Usage: messenger-bench <COMMAND> [--flag VALUE]...\n\nCommands:\n",
    );
    for s in SPECS.iter().filter(|s| !s.hidden) {
        out += &format!("  {:<8}  {}\n", s.name, s.about);
    }
    out + "\n`messenger-bench <COMMAND> --help` lists a command's flags.\n"
}

/// One subcommand's usage and flags with their defaults.
pub(crate) fn help(spec: &Spec) -> String {
    let mut out = format!(
        "{}\n\nUsage: messenger-bench {} [--flag VALUE]...\n\nFlags:\n",
        spec.about, spec.name
    );
    for f in spec.flags {
        let left = format!("--{} {}", f.name, f.value);
        let default = f.default.map(|d| format!(" [default: {d}]"));
        out += &format!("  {left:<26}  {}{}\n", f.help, default.unwrap_or_default());
    }
    out + "  -h, --help                  Print this help\n"
}
