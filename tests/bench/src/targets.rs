//! The suite's verdict: each figure of the performance issues' table against
//! its target, and the anchors as ratios (ours ÷ theirs, no target).
//!
//! Every figure is a [`Series`], one value per round of the runs it comes
//! from ([`crate::rounds`]); a row shows its median and spread and is met
//! only when every round meets the target. A ratio is taken per round,
//! between the two runs of that round. A failed run never meets its target.

use crate::anchors::REFERENCE_KS;
use crate::fanout::LATENCY_FROM;
use crate::rounds::{self, Series, Spread};
use serde_json::{Value, json};

/// A figure's threshold: `(at_least, bound, as shown)`.
pub(crate) type Bound = (bool, f64, &'static str);

/// `field` of every round of the run `base`.
pub(crate) fn get(runs: &Value, base: &str, field: &str) -> Series {
    rounds::series(runs, base, field)
}

/// Per round, `a ÷ b`.
pub(crate) fn ratio(a: Series, b: Series) -> Series {
    rounds::ratio(&a, &b)
}

fn error_of(run: &Value) -> String {
    run.get("error")
        .and_then(Value::as_str)
        .map(|e| format!("run failed: {e}"))
        .unwrap_or_default()
}

/// The errors of every round of the runs `bases`, joined.
pub(crate) fn errors(runs: &Value, bases: &[&str]) -> String {
    bases
        .iter()
        .flat_map(|b| {
            let n = rounds::count(runs, b).max(1);
            (0..n).map(move |r| rounds::name(b, r))
        })
        .map(|n| match error_of(&runs[&n]) {
            e if e.is_empty() => e,
            e => format!("{n}: {e}"),
        })
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn row(figure: String, measured: Series, bound: Option<Bound>, note: String) -> Value {
    let met = bound.map(|(at_least, b, _)| {
        rounds::every(&measured, |m| if at_least { m >= b } else { m <= b })
    });
    let target = bound.map_or("anchor", |(_, _, shown)| shown);
    let spread = Spread::of(&measured);
    json!({
        "figure": figure,
        "measured": spread.map(|s| s.median),
        "min": spread.map(|s| s.min),
        "max": spread.map(|s| s.max),
        "runs": measured,
        "target": target,
        "met": met,
        "note": note,
    })
}

/// The K=1000 max-rate run: throughput, CPU per delivery, the loss check.
const K1000: &str = "fanout-k1000";
/// p99 at K=1000 at a fixed [`FIXED_RATE`] (issue 28: not half of the day's max).
pub(crate) const K1000_FIXED: &str = "fanout-k1000-at250";
/// Messages per second of [`K1000_FIXED`].
pub(crate) const FIXED_RATE: &str = "250";

/// p99 of each round of the fixed-`rate` run `base` that carried at least
/// 95% of the rate: sent (accepted/s) and delivered (deliveries/s ÷ K, the
/// drain included). A machine that can't take the load measures another
/// one; a driver that does not wait on deliveries (nats-server's) would
/// otherwise report a growing queue at a rate it was never able to deliver.
pub(crate) fn carried_p99(runs: &Value, base: &str, rate: &str) -> Series {
    let rate: f64 = rate.parse().expect("a number");
    let sent = get(runs, base, "/accepted_per_sec");
    let delivered = ratio(
        get(runs, base, "/deliveries_per_sec"),
        get(runs, base, "/subscribers"),
    );
    let carried = |r: Option<f64>| r.is_some_and(|r| r >= 0.95 * rate);
    get(runs, base, "/delivery_latency_ms/p99")
        .into_iter()
        .zip(sent.into_iter().zip(delivered))
        .map(|(p99, (s, d))| p99.filter(|_| carried(s) && carried(d)))
        .collect()
}

/// One row per figure of the performance table, then one per anchor ratio.
/// `spans` is (100%, 10%) spans received, over all rounds.
pub(crate) fn summary(runs: &Value, spans: (Option<u64>, Option<u64>)) -> Value {
    let per_delivery = |cpu: &str| {
        let s = ratio(get(runs, K1000, cpu), get(runs, K1000, "/deliveries"));
        rounds::map(&s, |v| v * 1e6)
    };
    let telemetry = |on: &str| {
        ratio(
            get(runs, on, "/deliveries_per_sec"),
            get(runs, "telemetry-off", "/deliveries_per_sec"),
        )
    };
    let spans_note = |n: Option<u64>, on: &str| {
        format!(
            "K=100, per round (on and off run back to back); off = no trace export (metrics always on); {} spans reached otlp-sink {}",
            n.map_or("?".to_owned(), |s| s.to_string()),
            errors(runs, &[on, "telemetry-off"])
        )
    };
    let k1000_note = errors(runs, &[K1000]);
    let lost: Series = {
        let parts: Vec<Series> = ["/lost", "/duplicated", "/reordered"]
            .iter()
            .map(|f| get(runs, K1000, f))
            .collect();
        (0..parts[0].len())
            .map(|r| parts.iter().map(|p| p[r]).sum::<Option<f64>>())
            .collect()
    };
    let r = &runs[K1000];
    let mut rows = vec![
        row(
            "server CPU per delivery, K=1000 (µs)".into(),
            per_delivery("/server_cpu_seconds"),
            Some((false, 1.0, "≤ 1.0")),
            k1000_note.clone(),
        ),
        row(
            "deliveries/s, K=1000".into(),
            get(runs, K1000, "/deliveries_per_sec"),
            Some((true, 1e6, "≥ 1,000,000")),
            k1000_note.clone(),
        ),
        row(
            format!("delivery p99 at K=1000 at a fixed {FIXED_RATE} msg/s (ms; {LATENCY_FROM})"),
            carried_p99(runs, K1000_FIXED, FIXED_RATE),
            Some((false, 10.0, "≤ 10")),
            format!(
                "a round that sent or delivered below 95% of the rate has no value; accepted msg/s per round: {:?} {}",
                get(runs, K1000_FIXED, "/accepted_per_sec")
                    .iter()
                    .map(|r| r.map(|r| r.round()))
                    .collect::<Vec<_>>(),
                errors(runs, &[K1000_FIXED])
            ),
        ),
        row(
            "server RSS per idle subscriber, 10,000 streams on 10,000 connections (KiB)".into(),
            rounds::map(&get(runs, "idle", "/bytes_per_subscriber"), |b| b / 1024.0),
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
                "round 1: lost {} / duplicated {} / reordered {}, disconnected subscribers {} {k1000_note}",
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
    rows.extend(crate::anchors::rows(runs));
    rows.extend(crate::broker::rows(runs));
    rows.extend(crate::broker_wait::rows(runs));
    Value::Array(rows)
}
