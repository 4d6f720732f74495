//! The suite's verdict: each figure of issue 15's table against its target,
//! the anchors as ratios (ours ÷ theirs, no target), and the markdown tables
//! (figures, then every run) printed for the README and written to
//! `summary.md`.

use crate::anchors::{NATS_KS, REFERENCE_KS};
use crate::suite::FANOUT_KS;
use serde_json::{Value, json};

/// A figure's threshold: `(at_least, bound, as shown)`.
pub(crate) type Bound = (bool, f64, &'static str);

pub(crate) fn get(runs: &Value, run: &str, field: &str) -> Option<f64> {
    runs[run].pointer(field).and_then(Value::as_f64)
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b)
}

fn error_of(run: &Value) -> String {
    run.get("error")
        .and_then(Value::as_str)
        .map(|e| format!("run failed: {e}"))
        .unwrap_or_default()
}

pub(crate) fn errors(runs: &Value, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| error_of(&runs[*n]))
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn row(
    figure: String,
    measured: Option<f64>,
    bound: Option<Bound>,
    note: String,
) -> Value {
    let met = bound
        .map(|(at_least, b, _)| measured.is_some_and(|m| if at_least { m >= b } else { m <= b }));
    let target = bound.map_or("anchor", |(_, _, shown)| shown);
    json!({ "figure": figure, "measured": measured, "target": target, "met": met, "note": note })
}

/// One row per figure of issue 15's table, then one per anchor ratio; a
/// failed run never meets its target. `spans` is (100%, 10%) spans received.
pub(crate) fn summary(runs: &Value, spans: (Option<u64>, Option<u64>)) -> Value {
    let k1000 = "fanout-k1000";
    let per_delivery =
        |cpu: &str| ratio(get(runs, k1000, cpu), get(runs, k1000, "/deliveries")).map(|s| s * 1e6);
    let telemetry = |on: &str| {
        ratio(
            get(runs, on, "/deliveries_per_sec"),
            get(runs, "telemetry-off", "/deliveries_per_sec"),
        )
    };
    let spans_note = |n: Option<u64>, on: &str| {
        format!(
            "K=100; off = no trace export (metrics always on); {} spans reached otlp-sink {}",
            n.map_or("?".to_owned(), |s| s.to_string()),
            errors(runs, &[on, "telemetry-off"])
        )
    };
    let k1000_note = errors(runs, &[k1000]);
    let lost = ["/lost", "/duplicated", "/reordered"]
        .iter()
        .map(|f| get(runs, k1000, f))
        .sum::<Option<f64>>();
    let r = &runs[k1000];
    let mut rows = vec![
        row(
            "server CPU per delivery, K=1000 (µs)".into(),
            per_delivery("/server_cpu_seconds"),
            Some((false, 1.0, "≤ 1.0")),
            k1000_note.clone(),
        ),
        row(
            "deliveries/s, K=1000".into(),
            get(runs, k1000, "/deliveries_per_sec"),
            Some((true, 1e6, "≥ 1,000,000")),
            k1000_note.clone(),
        ),
        row(
            "delivery p99 at K=1000, half the max rate (ms)".into(),
            get(runs, "fanout-k1000-half", "/delivery_latency_ms/p99"),
            Some((false, 10.0, "≤ 10")),
            errors(runs, &["fanout-k1000-half"]),
        ),
        row(
            "server RSS per idle subscriber, 10,000 streams on 10,000 connections (KiB)".into(),
            get(runs, "idle", "/bytes_per_subscriber").map(|b| b / 1024.0),
            Some((false, 10.0, "≤ 10")),
            errors(runs, &["idle"]),
        ),
        row(
            "HTTP POST /sendMessage req/s, 10 keep-alive connections".into(),
            get(runs, "http-c10", "/requests_per_sec"),
            Some((true, 25_000.0, "≥ 25,000")),
            errors(runs, &["http-c10"]),
        ),
        row(
            "HTTP POST /sendMessage p99 (ms)".into(),
            get(runs, "http-c10", "/latency_ms/p99"),
            Some((false, 5.0, "≤ 5")),
            errors(runs, &["http-c10"]),
        ),
        row(
            "deliveries/s with OTLP on ÷ off, 10% head sampling".into(),
            telemetry("telemetry-on-10pct"),
            Some((true, 0.95, "≥ 0.95")),
            spans_note(spans.1, "telemetry-on-10pct"),
        ),
        row(
            "deliveries/s with OTLP on ÷ off, 100% sampling".into(),
            telemetry("telemetry-on"),
            Some((true, 0.85, "≥ 0.85")),
            spans_note(spans.0, "telemetry-on"),
        ),
        row(
            "lost + duplicated + reordered, K=1000".into(),
            lost,
            Some((false, 0.0, "= 0")),
            format!(
                "lost {} / duplicated {} / reordered {}, disconnected subscribers {} {k1000_note}",
                r["lost"], r["duplicated"], r["reordered"], r["disconnected_subscribers"]
            ),
        ),
        row(
            "bench CPU per delivery, K=1000 (µs; the load generator's own cost)".into(),
            per_delivery("/bench_cpu_seconds"),
            None,
            k1000_note,
        ),
    ];
    for k in REFERENCE_KS {
        let (ours, theirs) = (format!("fanout-k{k}"), format!("reference-k{k}"));
        let note = errors(runs, &[&ours, &theirs]);
        rows.push(row(format!("ours ÷ course design (Python grpcio, SimpleQueue per subscriber): deliveries/s, K={k}"),
            ratio(get(runs, &ours, "/deliveries_per_sec"), get(runs, &theirs, "/deliveries_per_sec")), None, note.clone()));
        rows.push(row(
            format!("ours ÷ course design: delivery p99, K={k}"),
            ratio(
                get(runs, &ours, "/delivery_latency_ms/p99"),
                get(runs, &theirs, "/delivery_latency_ms/p99"),
            ),
            None,
            note,
        ));
    }
    for k in NATS_KS {
        let (ours, theirs) = (format!("fanout-k{k}"), format!("nats-k{k}"));
        let note = errors(runs, &[&ours, &theirs]);
        rows.push(row(
            format!("ours ÷ nats-server core pub/sub: deliveries/s, K={k}"),
            ratio(
                get(runs, &ours, "/deliveries_per_sec"),
                get(runs, &theirs, "/deliveries_per_sec"),
            ),
            None,
            note.clone(),
        ));
        rows.push(row(
            format!("ours ÷ nats-server: delivery p99, K={k}"),
            ratio(
                get(runs, &ours, "/delivery_latency_ms/p99"),
                get(runs, &theirs, "/delivery_latency_ms/p99"),
            ),
            None,
            note,
        ));
    }
    rows.extend(crate::broker::rows(runs));
    Value::Array(rows)
}

fn num(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer).and_then(Value::as_f64) {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
        None => "–".to_owned(),
    }
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
            names.push(format!("nats-k{k}"));
        }
    }
    names.extend(crate::broker::run_names());
    let rest = [
        "fanout-k1000-half",
        "telemetry-on",
        "telemetry-off",
        "telemetry-on-10pct",
    ];
    names.extend(rest.map(String::from));
    names
}

/// The figures table, then one row of figures per run.
pub(crate) fn markdown(summary: &Value, runs: &Value) -> String {
    let mut out =
        String::from("| figure | measured | target | met | note |\n|---|---|---|---|---|\n");
    for r in summary.as_array().into_iter().flatten() {
        let met = match r["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        out += &format!(
            "| {} | {} | {} | {met} | {} |\n",
            r["figure"].as_str().unwrap_or(""),
            num(r, "/measured"),
            r["target"].as_str().unwrap_or(""),
            r["note"].as_str().unwrap_or("")
        );
    }
    out += "\n| run | K | accepted/s | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | reord | bench CPU s | server CPU s | server peak RSS MiB |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for name in fanout_runs() {
        let r = &runs[&name];
        if r.get("error").is_some() {
            out += &format!("| {name} | {} |\n", error_of(r));
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
    out += &format!(
        "\nidle: {} subscribers over {} connections, server RSS {} -> {} bytes, {} bytes/subscriber, setup {} s {}\n",
        num(idle, "/subscribers"),
        num(idle, "/connections"),
        num(idle, "/server_rss_before_bytes"),
        num(idle, "/server_rss_after_bytes"),
        num(idle, "/bytes_per_subscriber"),
        num(idle, "/setup_secs"),
        error_of(idle)
    );
    let http = &runs["http-c10"];
    out += &format!(
        "http: {} connections, {} req/s, p50 {} ms, p99 {} ms, max {} ms, errors {}, CPU s: bench {} client {} server {} {}\n",
        num(http, "/connections"),
        num(http, "/requests_per_sec"),
        num(http, "/latency_ms/p50"),
        num(http, "/latency_ms/p99"),
        num(http, "/latency_ms/max"),
        num(http, "/errors"),
        num(http, "/bench_cpu_seconds"),
        num(http, "/client_cpu_seconds"),
        num(http, "/server_cpu_seconds"),
        error_of(http)
    );
    out
}
