//! `suite` (`make bench`): the standard runs, each against a freshly started
//! release server (and client, for `http`), each as a child
//! `messenger-bench` process so its CPU figure is its own.
//!
//! Runs, in order: fanout K = 1, 8, 100, 1000 at max rate; at K = 8 and 100
//! the course design first ([`crate::anchors`]); at K = 100 and 1000 ours,
//! ours paced as the NATS driver (`fanout-k{K}-paced`, `--pace
//! first-receipt`), nats-server and the Redis engine (paced alike,
//! [`crate::broker`]) in `--rounds` alternating rounds ([`crate::rounds`]);
//! two Redis replicas at K = 1000 and
//! the stream's ceiling; ours and Redis saturated (64 publishers), in rounds;
//! Redis with MIN_REPLICAS 0 and 1 on a primary and one replica, in rounds
//! ([`crate::broker_wait`]); ours and nats-server at one fixed rate
//! ([`anchors::SAME_RATE`]: K = 1000 at 250 msg/s, K = 100 at 1,500 msg/s),
//! in rounds; idle with 10,000 subscribers on
//! 10,000 connections; http with 10 connections, in rounds; fanout K = 100
//! without trace export, then with the OTLP exporter on (into `otlp-sink`) at
//! 100% and at 10% head sampling, in rounds ([`crate::telemetry`]; "off" is
//! no trace export: the server's metrics recorder is always on). A failed run
//! is recorded in the summary and the suite goes on. Every child is bounded
//! (its duration + [`CHILD_SLACK`]). `--only` runs some of the [`GROUPS`]
//! (the summary then leaves out the figures no run measured).

use crate::anchors::{self, NATS_KS, PACE_AS_NATS, REFERENCE_KS, SAME_RATE};
use crate::broker;
use crate::broker_wait;
use crate::chart;
use crate::cli::SuiteArgs;
use crate::markdown;
use crate::procs::{Proc, child};
use crate::rounds::{self, Side};
use crate::targets;
use crate::telemetry;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a bench child may take beyond its duration (setup of 10,000 idle
/// streams, drain and stop included).
const CHILD_SLACK: Duration = Duration::from_secs(300);

/// The suite's groups of runs, in the order they run (`--only` names them).
pub(crate) const GROUPS: [&str; 8] = [
    "fanout",
    "redis-replicas",
    "saturated",
    "redis-min-replicas",
    "fixed-rate",
    "idle",
    "http",
    "telemetry",
];

/// `--only`'s value: group names, comma-separated, each known and given once.
pub(crate) fn groups(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for g in text.split(',').map(str::trim) {
        if !GROUPS.contains(&g) {
            return Err(format!(
                "--only: unknown group {g:?} ({})",
                GROUPS.join(", ")
            ));
        }
        if out.iter().any(|o| o == g) {
            return Err(format!("--only: {g} given twice"));
        }
        out.push(g.to_owned());
    }
    Ok(out)
}

/// Subscriber counts of the max-rate fan-out runs (the chart's x axis).
pub(crate) const FANOUT_KS: [usize; 4] = [1, 8, 100, 1000];

pub(crate) struct Bins {
    pub(crate) server: PathBuf,
    client: PathBuf,
    pub(crate) bench: PathBuf,
    /// Longest a bench child may run: its duration plus [`CHILD_SLACK`].
    pub(crate) child_limit: Duration,
}

pub(crate) fn run(args: SuiteArgs) -> Result<(), String> {
    let began = std::time::Instant::now();
    let bins = &binaries(
        &args.bin_dir,
        crate::cli::duration(args.duration)? + CHILD_SLACK,
    )?;
    let args = &args;
    let only = args.only.as_ref();
    let want = |group: &str| only.is_none_or(|o| o.iter().any(|g| g == group));
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("create {}: {e}", args.out.display()))?;
    let mut runs = Map::new();
    let out = args.out.as_path();
    let secs = args.duration.to_string();
    let pubs = args.publishers.to_string();
    let load = |k: &str, publishers: &str, extra: &[&str]| -> Vec<String> {
        let base = [
            "--subscribers",
            k,
            "--publishers",
            publishers,
            "--duration",
            &secs,
        ];
        base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let ours = move |env: Vec<(String, String)>, flags: Vec<String>| -> Taker<'_> {
        Box::new(move |name: &str| {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            fanout_run(bins, out, name, &env, &strs(&flags))
        })
    };
    for k in FANOUT_KS.into_iter().filter(|_| want("fanout")) {
        let flags = load(&k.to_string(), &pubs, &[]);
        if REFERENCE_KS.contains(&k) {
            let name = format!("reference-k{k}");
            let run = anchors::reference(bins, out, &args.python, &name, &strs(&flags));
            runs.insert(name, run);
        }
        let mut sides: Vec<Side<'_>> = vec![(format!("fanout-k{k}"), ours(vec![], flags.clone()))];
        // Compared with nats-server: every side on the NATS driver's rule.
        let paced: Vec<String> = flags
            .iter()
            .cloned()
            .chain(PACE_AS_NATS.map(String::from))
            .collect();
        if NATS_KS.contains(&k) {
            sides.push((anchors::paced(k), ours(vec![], paced.clone())));
            sides.push((format!("nats-k{k}"), nats(bins, args, flags.clone())));
        }
        if broker::REDIS_KS.contains(&k) {
            sides.push((format!("redis-fanout-k{k}"), redis(bins, args, paced)));
        }
        let n = if sides.len() > 1 { args.rounds } else { 1 };
        rounds::alternate(&mut runs, n, &sides);
    }
    // Two replicas on one stream: fan-out at K=1000, then the acceptance ceiling.
    let ceiling_pubs = broker::CEILING_PUBLISHERS.to_string();
    let replicas = [
        ("redis-replicas-k1000", "1000", pubs.as_str()),
        ("redis-ceiling", "2", ceiling_pubs.as_str()),
    ];
    for (name, k, publishers) in replicas.into_iter().filter(|_| want("redis-replicas")) {
        let flags = load(k, publishers, &[]);
        let run = broker::fanout(bins, out, &args.redis_server, name, 2, &strs(&flags));
        runs.insert(name.to_owned(), run);
    }
    // Both engines saturated, side by side (see `broker`).
    let saturating = broker::SATURATING_PUBLISHERS.to_string();
    for k in broker::REDIS_KS.into_iter().filter(|_| want("saturated")) {
        let flags = load(&k.to_string(), &saturating, &[]);
        let sides: [Side<'_>; 2] = [
            (
                format!("fanout-k{k}-p{saturating}"),
                ours(vec![], flags.clone()),
            ),
            (
                format!("redis-fanout-k{k}-p{saturating}"),
                redis(bins, args, flags),
            ),
        ];
        rounds::alternate(&mut runs, args.rounds, &sides);
    }
    if want("redis-min-replicas") {
        let flags = load(&broker_wait::K.to_string(), &pubs, &[]);
        let sides: Vec<Side<'_>> = [0, 1]
            .map(|min| {
                let flags = flags.clone();
                let take: Taker<'_> = Box::new(move |name: &str| {
                    let r = &args.redis_server;
                    broker_wait::fanout(bins, out, r, name, min, &strs(&flags))
                });
                (broker_wait::run_name(min), take)
            })
            .into();
        rounds::alternate(&mut runs, args.rounds, &sides);
    }
    if want("fixed-rate") {
        let mut sides: Vec<Side<'_>> = Vec::new();
        for (k, rate) in SAME_RATE {
            let fixed = load(&k.to_string(), &pubs, &["--rate", rate]);
            sides.push((
                anchors::at_rate("fanout", k, rate),
                ours(vec![], fixed.clone()),
            ));
            sides.push((anchors::at_rate("nats", k, rate), nats(bins, args, fixed)));
        }
        rounds::alternate(&mut runs, args.rounds, &sides);
    }
    let n = args.idle_subscribers.to_string();
    let idle_name = format!("idle-{n}");
    let idle = want("idle").then(|| {
        with_server(bins, &[], |addr, pid| {
            let flags = [
                "idle",
                "--server",
                addr,
                "--server-pid",
                pid,
                "--subscribers",
                &n,
            ];
            bench(bins, out, &idle_name, &flags)
        })
    });
    if let Some(idle) = idle {
        runs.insert("idle".to_owned(), idle);
    }
    if want("http") {
        let http: [Side<'_>; 1] = [(
            "http-c10".to_owned(),
            Box::new(|name: &str| http_run(bins, out, name, &secs)),
        )];
        rounds::alternate(&mut runs, args.rounds, &http);
    }
    let k100 = load("100", &pubs, &[]);
    let traced = |sampling: &'static [(&'static str, &'static str)]| -> Taker<'_> {
        let flags = k100.clone();
        Box::new(move |name: &str| {
            telemetry::on(bins, sampling, |env| {
                let env = env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                ours(env, flags.clone())(name)
            })
        })
    };
    if want("telemetry") {
        let sides: [Side<'_>; 3] = [
            ("telemetry-off".to_owned(), ours(vec![], k100.clone())),
            ("telemetry-on".to_owned(), traced(&[])),
            (
                "telemetry-on-10pct".to_owned(),
                traced(&telemetry::SAMPLE_10PCT),
            ),
        ];
        rounds::alternate(&mut runs, args.rounds, &sides);
    }

    let runs = Value::Object(runs);
    let chart_path = args.out.join("chart.svg");
    let chart_note = match chart::draw(&chart_path, &runs) {
        Ok(()) => chart_path.display().to_string(),
        Err(e) => format!("chart failed: {e}"),
    };
    let spans = (
        telemetry::spans(&runs, "telemetry-on"),
        telemetry::spans(&runs, "telemetry-on-10pct"),
    );
    let mut summary = targets::summary(&runs, spans);
    if let (Some(_), Value::Array(rows)) = (&only, &mut summary) {
        rows.retain(|r| !r["measured"].is_null());
    }
    let markdown = markdown::render(&summary, &runs);
    let spans_json = json!({ "sampled_100pct": spans.0, "sampled_10pct": spans.1 });
    let secs_taken = began.elapsed().as_secs();
    let text = serde_json::to_string_pretty(&json!({
        "rounds": args.rounds, "suite_secs": secs_taken,
        "runs": runs, "targets": summary, "spans_exported": spans_json,
    }))
    .expect("a Value serializes");
    let path = args.out.join("summary.json");
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    let md = args.out.join("summary.md");
    std::fs::write(&md, &markdown).map_err(|e| format!("write {}: {e}", md.display()))?;
    println!(
        "\n{markdown}\nsuite: {} rounds, {secs_taken} s. JSON: {}/*.json, summary: {} and {}, chart: {chart_note}",
        args.rounds,
        args.out.display(),
        path.display(),
        md.display()
    );
    Ok(())
}

/// How a side of a group takes one run, given the run's name.
type Taker<'a> = Box<dyn Fn(&str) -> Value + 'a>;

/// The nats-server run with `flags` (`fanout`'s load flags, no `--pace`).
fn nats<'a>(bins: &'a Bins, args: &'a SuiteArgs, flags: Vec<String>) -> Taker<'a> {
    Box::new(move |name: &str| {
        anchors::nats(bins, &args.out, &args.nats_server, name, &strs(&flags))
    })
}

/// The Redis-engine run (one replica) with `flags`.
fn redis<'a>(bins: &'a Bins, args: &'a SuiteArgs, flags: Vec<String>) -> Taker<'a> {
    Box::new(move |name: &str| {
        broker::fanout(bins, &args.out, &args.redis_server, name, 1, &strs(&flags))
    })
}

/// `&str` views of owned flags.
fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

fn binaries(dir: &Path, child_limit: Duration) -> Result<Bins, String> {
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} is missing: run `cargo build --release --bins` first",
                path.display()
            ))
        }
    };
    Ok(Bins {
        server: find("messenger-server")?,
        client: find("messenger-client")?,
        bench: std::env::current_exe().map_err(|e| format!("own path: {e}"))?,
        child_limit,
    })
}

/// Runs `f(grpc_addr, pid)` against a fresh server with extra `env`.
fn with_server(bins: &Bins, env: &[(&str, &str)], f: impl FnOnce(&str, &str) -> Value) -> Value {
    let mut all = vec![
        ("MESSENGER_SERVER_HOST", "127.0.0.1"),
        ("MESSENGER_SERVER_PORT", "0"),
        ("MESSENGER_METRICS_PORT", "0"),
    ];
    all.extend_from_slice(env);
    let server = match Proc::spawn("messenger-server", &bins.server, &[], &all) {
        Ok(server) => server,
        Err(e) => return json!({ "error": e }),
    };
    let value = match server.wait_addr("grpc_addr") {
        Ok(addr) => f(&addr.to_string(), &server.pid().to_string()),
        Err(e) => json!({ "error": e }),
    };
    server.stop();
    value
}

/// Runs one `messenger-bench` child writing `out/name.json`; its JSON, or
/// `{"error": ...}`.
fn bench(bins: &Bins, out: &Path, name: &str, args: &[&str]) -> Value {
    child(&bins.bench, out, name, args, bins.child_limit)
}

/// One `fanout` run against a fresh server started with `env`.
fn fanout_run(bins: &Bins, out: &Path, name: &str, env: &[(&str, &str)], args: &[&str]) -> Value {
    with_server(bins, env, |addr, pid| {
        let common = ["fanout", "--server", addr, "--server-pid", pid];
        bench(bins, out, name, &[&common[..], args].concat())
    })
}

fn http_run(bins: &Bins, out: &Path, name: &str, secs: &str) -> Value {
    with_server(bins, &[], |addr, server_pid| {
        let env = [
            ("MESSENGER_SERVER_ADDR", addr),
            ("MESSENGER_HTTP_HOST", "127.0.0.1"),
            ("MESSENGER_HTTP_PORT", "0"),
        ];
        let client = match Proc::spawn("messenger-client", &bins.client, &[], &env) {
            Ok(client) => client,
            Err(e) => return json!({ "error": e }),
        };
        let value = match client.wait_addr("http_addr") {
            Ok(http) => bench(
                bins,
                out,
                name,
                &[
                    "http",
                    "--client",
                    &http.to_string(),
                    "--connections",
                    "10",
                    "--client-pid",
                    &client.pid().to_string(),
                    "--server-pid",
                    server_pid,
                    "--duration",
                    secs,
                ],
            ),
            Err(e) => json!({ "error": e }),
        };
        client.stop();
        value
    })
}
