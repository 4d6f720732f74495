//! The suite's verdict: each target figure against its threshold, and the
//! markdown tables (targets, then every run's figures) printed for the README.

use crate::suite::FANOUT_KS;
use serde_json::{Value, json};

/// One target: the figure's path in a run's JSON, its comparison and bound.
struct Target {
    figure: &'static str,
    run: &'static str,
    field: &'static str,
    at_least: bool,
    bound: f64,
    shown: &'static str,
}

const TARGETS: [Target; 6] = [
    Target {
        figure: "fanout K=1000 deliveries/s",
        run: "fanout-k1000",
        field: "/deliveries_per_sec",
        at_least: true,
        bound: 200_000.0,
        shown: "≥ 200,000",
    },
    Target {
        figure: "fanout K=1000 at half rate: delivery p99 (ms)",
        run: "fanout-k1000-half",
        field: "/delivery_latency_ms/p99",
        at_least: false,
        bound: 50.0,
        shown: "≤ 50",
    },
    Target {
        figure: "idle 10k: server bytes/subscriber",
        run: "idle",
        field: "/bytes_per_subscriber",
        at_least: false,
        bound: 30.0 * 1024.0,
        shown: "≤ 30,720 (30 KiB)",
    },
    Target {
        figure: "http 10 conns: requests/s",
        run: "http-c10",
        field: "/requests_per_sec",
        at_least: true,
        bound: 15_000.0,
        shown: "≥ 15,000",
    },
    Target {
        figure: "http 10 conns: p99 (ms)",
        run: "http-c10",
        field: "/latency_ms/p99",
        at_least: false,
        bound: 5.0,
        shown: "≤ 5",
    },
    Target {
        figure: "fanout K=1000 lost+duplicated+reordered",
        run: "fanout-k1000",
        field: "",
        at_least: false,
        bound: 0.0,
        shown: "= 0",
    },
];

fn row(figure: &str, measured: Option<f64>, shown: &str, met: bool, note: String) -> Value {
    json!({ "figure": figure, "measured": measured, "target": shown, "met": met, "note": note })
}

fn error_of(run: &Value) -> String {
    run.get("error")
        .and_then(Value::as_str)
        .map(|e| format!("run failed: {e}"))
        .unwrap_or_default()
}

/// One row per target, with `met` decided; a failed run never meets its target.
pub(crate) fn summary(runs: &Value, spans: Option<u64>) -> Value {
    let mut rows = Vec::new();
    for t in &TARGETS {
        let run = &runs[t.run];
        let measured = if t.field.is_empty() {
            ["/lost", "/duplicated", "/reordered"]
                .iter()
                .map(|f| run.pointer(f).and_then(Value::as_f64))
                .sum::<Option<f64>>()
        } else {
            run.pointer(t.field).and_then(Value::as_f64)
        };
        let met = measured.is_some_and(|m| {
            if t.at_least {
                m >= t.bound
            } else {
                m <= t.bound
            }
        });
        let note = if t.field.is_empty() {
            format!(
                "lost {} / duplicated {} / reordered {}, disconnected subscribers {}",
                run["lost"], run["duplicated"], run["reordered"], run["disconnected_subscribers"]
            )
        } else {
            error_of(run)
        };
        rows.push(row(t.figure, measured, t.shown, met, note));
    }
    let on = runs
        .pointer("/telemetry-on/deliveries_per_sec")
        .and_then(Value::as_f64);
    let off = runs
        .pointer("/telemetry-off/deliveries_per_sec")
        .and_then(Value::as_f64);
    let ratio = on
        .zip(off)
        .filter(|(_, off)| *off > 0.0)
        .map(|(on, off)| on / off);
    let note = format!(
        "K=100; on = OTLP export to otlp-sink ({} spans received), off = no trace export (metrics are always on) {}",
        spans.map_or("?".to_owned(), |s| s.to_string()),
        error_of(&runs["telemetry-on"]) + &error_of(&runs["telemetry-off"])
    );
    rows.push(row(
        "telemetry on/off deliveries/s ratio",
        ratio,
        "≥ 0.9",
        ratio.is_some_and(|r| r >= 0.9),
        note,
    ));
    Value::Array(rows)
}

fn num(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer).and_then(Value::as_f64) {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_owned(),
    }
}

/// The targets table, then one row of figures per run.
pub(crate) fn markdown(summary: &Value, runs: &Value) -> String {
    let mut out =
        String::from("| figure | measured | target | met | note |\n|---|---|---|---|---|\n");
    for r in summary.as_array().into_iter().flatten() {
        let met = if r["met"].as_bool() == Some(true) {
            "yes"
        } else {
            "**no**"
        };
        out += &format!(
            "| {} | {} | {} | {met} | {} |\n",
            r["figure"].as_str().unwrap_or(""),
            num(r, "/measured"),
            r["target"].as_str().unwrap_or(""),
            r["note"].as_str().unwrap_or("")
        );
    }
    out += "\n| fanout run | K | accepted/s | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | send p99 ms | lost | dup | reord | disc | bench CPU s | server CPU s | server peak RSS MiB |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    let names = FANOUT_KS
        .iter()
        .map(|k| format!("fanout-k{k}"))
        .chain(["fanout-k1000-half", "telemetry-on", "telemetry-off"].map(String::from));
    for name in names {
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
            "/send_latency_ms/p99",
            "/lost",
            "/duplicated",
            "/reordered",
            "/disconnected_subscribers",
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
