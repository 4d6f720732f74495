//! `suite` (`make bench`): the standard runs, each against a freshly started
//! release server (and client, for `http`), each as a child
//! `messenger-bench` process so its CPU figure is its own.
//!
//! Runs: fanout K = 1, 8, 100, 1000 at max rate, each followed by its
//! anchors ([`crate::anchors`]: the course design at K = 8 and 100, NATS at
//! K = 100 and 1000); K = 1000 at half the rate found; idle with 10,000
//! subscribers on 10,000 connections; http with 10 connections; fanout
//! K = 100 with the OTLP exporter on (into `otlp-sink`) at 100% and at 10%
//! head sampling, and off ("off" is no trace export: the server's metrics
//! recorder is always on). The Redis-engine runs ([`crate::broker`]) follow
//! the in-process runs they are compared with. A failed run is recorded in the summary and the
//! suite goes on. Every child is bounded (its duration + [`CHILD_SLACK`]).

use crate::anchors::{self, NATS_KS, REFERENCE_KS};
use crate::broker;
use crate::chart;
use crate::cli::SuiteArgs;
use crate::procs::{Proc, child};
use crate::targets;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a bench child may take beyond its duration (setup of 10,000 idle
/// streams, drain and stop included).
const CHILD_SLACK: Duration = Duration::from_secs(300);

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
    let bins = binaries(
        &args.bin_dir,
        crate::cli::duration(args.duration)? + CHILD_SLACK,
    )?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("create {}: {e}", args.out.display()))?;
    let mut runs = Map::new();
    let secs = args.duration.to_string();
    let pubs = args.publishers.to_string();
    let fanout = |name: &str, env: &[(&str, &str)], k: &str, extra: &[&str]| {
        fanout_run(
            &bins,
            &args.out,
            name,
            env,
            &[
                &[
                    "--subscribers",
                    k,
                    "--publishers",
                    &pubs,
                    "--duration",
                    &secs,
                ],
                extra,
            ]
            .concat(),
        )
    };
    for k in FANOUT_KS {
        let (name, k) = (format!("fanout-k{k}"), k.to_string());
        runs.insert(name.clone(), fanout(&name, &[], &k, &[]));
        let same = [
            "--subscribers",
            &k,
            "--publishers",
            &pubs,
            "--duration",
            &secs,
        ];
        if REFERENCE_KS.iter().any(|r| r.to_string() == k) {
            let name = format!("reference-k{k}");
            let run = anchors::reference(&bins, &args.out, &args.python, &name, &same);
            runs.insert(name, run);
        }
        if NATS_KS.iter().any(|n| n.to_string() == k) {
            let name = format!("nats-k{k}");
            let run = anchors::nats(&bins, &args.out, &args.nats_server, &name, &same);
            runs.insert(name, run);
        }
        if broker::REDIS_KS.iter().any(|n| n.to_string() == k) {
            let name = format!("redis-fanout-k{k}");
            let run = broker::fanout(&bins, &args.out, &args.redis_server, &name, 1, &same);
            runs.insert(name, run);
        }
    }
    // Two replicas on one stream: fan-out at K=1000, then the acceptance ceiling.
    let ceiling_pubs = broker::CEILING_PUBLISHERS.to_string();
    for (name, k, publishers) in [
        ("redis-replicas-k1000", "1000", pubs.as_str()),
        ("redis-ceiling", "2", ceiling_pubs.as_str()),
    ] {
        let flags = [
            "--subscribers",
            k,
            "--publishers",
            publishers,
            "--duration",
            &secs,
        ];
        let run = broker::fanout(&bins, &args.out, &args.redis_server, name, 2, &flags);
        runs.insert(name.to_owned(), run);
    }
    // Both engines saturated, side by side (see `broker`).
    let saturating = broker::SATURATING_PUBLISHERS.to_string();
    for k in broker::REDIS_KS {
        let k = k.to_string();
        let flags = [
            "--subscribers",
            &k,
            "--publishers",
            &saturating,
            "--duration",
            &secs,
        ];
        let name = format!("fanout-k{k}-p{saturating}");
        runs.insert(
            name.clone(),
            fanout_run(&bins, &args.out, &name, &[], &flags),
        );
        let name = format!("redis-fanout-k{k}-p{saturating}");
        let run = broker::fanout(&bins, &args.out, &args.redis_server, &name, 1, &flags);
        runs.insert(name, run);
    }
    let max_rate = runs["fanout-k1000"]["accepted_per_sec"].as_f64();
    let half = match max_rate {
        Some(rate) if rate > 0.0 => {
            let half = format!("{:.1}", rate / 2.0);
            fanout("fanout-k1000-half", &[], "1000", &["--rate", &half])
        }
        _ => json!({ "error": "skipped: the K=1000 max-rate run found no rate" }),
    };
    runs.insert("fanout-k1000-half".to_owned(), half);
    let n = args.idle_subscribers.to_string();
    let idle_name = format!("idle-{n}");
    let idle = with_server(&bins, &[], |addr, pid| {
        bench(
            &bins,
            &args.out,
            &idle_name,
            &[
                "idle",
                "--server",
                addr,
                "--server-pid",
                pid,
                "--subscribers",
                &n,
            ],
        )
    });
    runs.insert("idle".to_owned(), idle);
    runs.insert("http-c10".to_owned(), http_run(&bins, &args.out, &secs));
    let (on, spans_all) = telemetry_on(&bins, &[], |env| fanout("telemetry-on", env, "100", &[]));
    runs.insert("telemetry-on".to_owned(), on);
    let off = fanout("telemetry-off", &[], "100", &[]);
    runs.insert("telemetry-off".to_owned(), off);
    let (on, spans_10pct) = telemetry_on(&bins, &SAMPLE_10PCT, |env| {
        fanout("telemetry-on-10pct", env, "100", &[])
    });
    runs.insert("telemetry-on-10pct".to_owned(), on);
    let spans = (spans_all, spans_10pct);

    let runs = Value::Object(runs);
    let chart_path = args.out.join("chart.svg");
    let chart_note = match chart::draw(&chart_path, &runs) {
        Ok(()) => chart_path.display().to_string(),
        Err(e) => format!("chart failed: {e}"),
    };
    let summary = targets::summary(&runs, spans);
    let markdown = targets::markdown(&summary, &runs);
    let spans_json = json!({ "sampled_100pct": spans.0, "sampled_10pct": spans.1 });
    let text = serde_json::to_string_pretty(
        &json!({ "runs": runs, "targets": summary, "spans_exported": spans_json }),
    )
    .expect("a Value serializes");
    let path = args.out.join("summary.json");
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    let md = args.out.join("summary.md");
    std::fs::write(&md, &markdown).map_err(|e| format!("write {}: {e}", md.display()))?;
    println!(
        "\n{markdown}\nJSON: {}/*.json, summary: {} and {}, chart: {chart_note}",
        args.out.display(),
        path.display(),
        md.display()
    );
    Ok(())
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

fn http_run(bins: &Bins, out: &Path, secs: &str) -> Value {
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
                "http-c10",
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

/// Head sampling of 10% of the traces (the SDK's standard variables).
const SAMPLE_10PCT: [(&str, &str); 2] = [
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
];

/// The K=100 run with the server exporting spans (sampled per `sampling`)
/// to an `otlp-sink`; also returns how many spans the sink received.
fn telemetry_on(
    bins: &Bins,
    sampling: &[(&str, &str)],
    fanout: impl FnOnce(&[(&str, &str)]) -> Value,
) -> (Value, Option<u64>) {
    let sink = match Proc::spawn("otlp-sink", &bins.bench, &["otlp-sink"], &[]) {
        Ok(sink) => sink,
        Err(e) => return (json!({ "error": e }), None),
    };
    let endpoint = match sink.wait_addr("otlp_addr") {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => return (json!({ "error": e }), None),
    };
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    env.extend_from_slice(sampling);
    let value = fanout(&env);
    // The server exports its last batch on shutdown, before `stop` returns.
    let spans = sink_spans(sink);
    (value, spans)
}

fn sink_spans(sink: Proc) -> Option<u64> {
    // SAFETY: kill(2) has no memory effects; the sink is our unreaped child.
    unsafe { libc::kill(sink.pid() as libc::pid_t, libc::SIGTERM) };
    let spans = sink.wait_value("spans_received").ok()?.parse().ok();
    sink.stop();
    spans
}
