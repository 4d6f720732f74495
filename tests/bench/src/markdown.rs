//! `summary.md`: the figures table ([`crate::targets`]: median, spread over
//! the rounds, met in every round or not), then one row per run and round,
//! then the idle and HTTP runs, printed for tests/bench/README.md and written to disk.

use crate::anchors::{self, NATS_KS, REFERENCE_KS, SAME_RATE};
use crate::fanout::LATENCY_FROM;
use crate::rounds;
use crate::suite::FANOUT_KS;
use crate::targets::{FIXED_RATE, K1000_FIXED};
use serde_json::Value;

fn fmt(x: f64) -> String {
    match x {
        x if x.abs() >= 100.0 => format!("{x:.0}"),
        x if x.fract() == 0.0 => format!("{x:.0}"),
        x if x.abs() >= 1.0 => format!("{x:.2}"),
        x => format!("{x:.3}"),
    }
}

fn num(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .map_or("–".to_owned(), fmt)
}

/// A figure's cell: the median, and with more than one round its min–max
/// and how many rounds had a value out of how many ran.
fn measured(r: &Value) -> String {
    let runs = r["runs"].as_array().map_or(&[][..], Vec::as_slice);
    let ok = runs.iter().filter(|v| v.is_f64()).count();
    let median = num(r, "/measured");
    if runs.len() <= 1 {
        return median;
    }
    format!(
        "{median} ({}–{}, {ok}/{} runs)",
        num(r, "/min"),
        num(r, "/max"),
        runs.len()
    )
}

/// Every fan-out-shaped run, in the order the suite runs them.
fn fanout_runs() -> Vec<String> {
    let mut names = Vec::new();
    for k in FANOUT_KS {
        names.push(format!("fanout-k{k}"));
        if REFERENCE_KS.contains(&k) {
            names.push(format!("reference-k{k}"));
        }
        if NATS_KS.contains(&k) {
            names.extend([anchors::paced(k), format!("nats-k{k}")]);
        }
    }
    names.extend(crate::broker::run_names());
    names.extend(crate::broker_wait::run_names());
    for (k, rate) in SAME_RATE {
        names.extend(["fanout", "nats"].map(|who| anchors::at_rate(who, k, rate)));
    }
    let rest = ["telemetry-off", "telemetry-on", "telemetry-on-10pct"];
    names.extend(rest.map(String::from));
    names
}

/// The figures table, then one row of figures per run and round.
pub(crate) fn render(summary: &Value, runs: &Value) -> String {
    let mut out = String::from(
        "Figures with several runs: median (min–max, runs with a value / runs). \
         A target is met only when every run meets it.\n\n\
         | figure | measured | target | met in every run | note |\n|---|---|---|---|---|\n",
    );
    for r in summary.as_array().into_iter().flatten() {
        let met = match r["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        out += &format!(
            "| {} | {} | {} | {met} | {} |\n",
            r["figure"].as_str().unwrap_or(""),
            measured(r),
            r["target"].as_str().unwrap_or(""),
            r["note"].as_str().unwrap_or("")
        );
    }
    out += &format!(
        "\nLatency: {LATENCY_FROM} (ours and nats-server alike). \
         Pacing: a `-paced` run, nats-k* and redis-fanout-k100/k1000 send a publisher's next message once \
         the first subscriber has the previous one (the NATS driver's rule); the other max-rate runs of ours send it \
         once SendMessage is answered (queued, before any delivery: more messages in flight). \
         `-atR`: a fixed R msg/s, the publishers' schedules staggered into one uniform rate, no wait on delivery \
         ({K1000_FIXED}: K=1000 at {FIXED_RATE} msg/s).\n"
    );
    out += "\n| run | K | accepted/s | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | reord | bench CPU s | server CPU s | server peak RSS MiB |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for name in fanout_runs()
        .iter()
        .flat_map(|base| rounds::names(runs, base))
    {
        let r = &runs[&name];
        if let Some(e) = r.get("error") {
            out += &format!("| {name} | run failed: {} |\n", e.as_str().unwrap_or(""));
            continue;
        }
        let rss = r["server_peak_rss_bytes"]
            .as_f64()
            .map_or("–".to_owned(), |b| format!("{:.0}", b / 1048576.0));
        let cols = [
            "/subscribers",
            "/accepted_per_sec",
            "/deliveries_per_sec",
            "/delivery_latency_ms/p50",
            "/delivery_latency_ms/p90",
            "/delivery_latency_ms/p99",
            "/delivery_latency_ms/p999",
            "/delivery_latency_ms/max",
            "/lost",
            "/duplicated",
            "/reordered",
            "/bench_cpu_seconds",
            "/server_cpu_seconds",
        ];
        let cells: Vec<String> = cols.iter().map(|c| num(r, c)).collect();
        out += &format!("| {name} | {} | {rss} |\n", cells.join(" | "));
    }
    let idle = &runs["idle"];
    out += &if idle.is_null() {
        String::new()
    } else {
        format!(
            "\nidle: {} subscribers over {} connections, server RSS {} -> {} bytes, {} bytes/subscriber, setup {} s {}\n",
            num(idle, "/subscribers"),
            num(idle, "/connections"),
            num(idle, "/server_rss_before_bytes"),
            num(idle, "/server_rss_after_bytes"),
            num(idle, "/bytes_per_subscriber"),
            num(idle, "/setup_secs"),
            idle["error"].as_str().unwrap_or("")
        )
    };
    for name in rounds::names(runs, "http-c10") {
        let http = &runs[&name];
        out += &format!(
            "{name}: {} connections, {} req/s, p50 {} ms, p99 {} ms, max {} ms, errors {}, CPU s: bench {} client {} server {} {}\n",
            num(http, "/connections"),
            num(http, "/requests_per_sec"),
            num(http, "/latency_ms/p50"),
            num(http, "/latency_ms/p99"),
            num(http, "/latency_ms/max"),
            num(http, "/errors"),
            num(http, "/bench_cpu_seconds"),
            num(http, "/client_cpu_seconds"),
            num(http, "/server_cpu_seconds"),
            http["error"].as_str().unwrap_or("")
        );
    }
    out
}
