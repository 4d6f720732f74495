//! Report plumbing shared by every scenario: latency histograms (HDR, in
//! microseconds) summarised as millisecond percentiles, the JSON file, the
//! human table on stdout, and the progress bar for longer runs.

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Highest latency a histogram records without clamping: 10 minutes in µs.
const MAX_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds are valid")
}

/// Records `micros`, clamped into the histogram's range.
pub(crate) fn record(hist: &mut Histogram<u64>, micros: u64) {
    hist.saturating_record(micros.clamp(1, MAX_MICROS));
}

fn ms(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

/// Full latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    pub(crate) fn of(hist: &Histogram<u64>) -> Self {
        Self {
            p50: ms(hist, 0.5),
            p90: ms(hist, 0.9),
            p99: ms(hist, 0.99),
            p999: ms(hist, 0.999),
            max: hist.max() as f64 / 1000.0,
        }
    }
}

/// Short latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct P50P99 {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

impl P50P99 {
    pub(crate) fn of(hist: &Histogram<u64>) -> Self {
        Self {
            p50: ms(hist, 0.5),
            p99: ms(hist, 0.99),
        }
    }
}

/// Each subscriber's own median delivery latency (ms): the lowest and the
/// highest over the subscribers that received a measured message. A wide
/// spread means the fan-out favours some subscribers over others (one that
/// is always visited last waits for the whole fan-out on every message).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of the medians of `hists`; `None` if none has a sample.
    pub(crate) fn of_medians<'a>(hists: impl Iterator<Item = &'a Histogram<u64>>) -> Option<Self> {
        let medians: Vec<f64> = hists
            .filter(|h| !h.is_empty())
            .map(|h| ms(h, 0.5))
            .collect();
        let min = medians.iter().copied().reduce(f64::min)?;
        let max = medians.iter().copied().reduce(f64::max)?;
        Some(Self { min, max })
    }
}

/// Prints `report` as an aligned two-column table and writes it to `json`.
pub(crate) fn emit<T: Serialize>(
    title: &str,
    report: &T,
    json: Option<&Path>,
) -> Result<(), String> {
    let value = serde_json::to_value(report).map_err(|e| format!("serialize report: {e}"))?;
    println!("{}", table(title, &value));
    if let Some(path) = json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&value).expect("a Value serializes");
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// One `key  value` row per leaf; nested objects become `key.sub`.
fn table(title: &str, value: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", value, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("== {title} ==\n");
    for (key, val) in rows {
        out.push_str(&format!("{key:<width$}  {val}\n"));
    }
    out
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::Number(n) => rows.push((prefix.to_owned(), pretty_number(n))),
        other => rows.push((prefix.to_owned(), other.to_string())),
    }
}

fn pretty_number(n: &serde_json::Number) -> String {
    match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => u.to_string(),
        (None, Some(f)) if f.abs() >= 100.0 => format!("{f:.0}"),
        (None, Some(f)) => format!("{f:.3}"),
        _ => n.to_string(),
    }
}

/// A time-based progress bar on stderr for runs over 2 s; hidden otherwise
/// (and, by indicatif, whenever stderr is not a terminal).
pub(crate) fn progress(what: &str, run: Duration) -> ProgressBar {
    if run <= Duration::from_secs(2) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(run.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}
