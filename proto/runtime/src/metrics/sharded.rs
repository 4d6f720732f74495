//! A Prometheus histogram for a per-delivery hot path: pre-bucketed counts
//! in one cache-padded row per thread, summed only when `/metrics` is read.
//!
//! The `metrics` crate's histogram (as metrics-exporter-prometheus 0.18
//! stores it) keeps every raw sample: each `record` bumps a generation
//! counter and pushes the `f64` into one `AtomicBucket` that every thread
//! shares, and upkeep folds the samples into buckets later. Per delivery on
//! two cores that is two contended read-modify-writes on shared cache lines
//! and, between upkeeps, a block allocation per 64 samples: 5.4% of the
//! server's CPU at K=100 (perf, tests/bench/README.md, issue 28). Here a
//! sample is two uncontended increments on the recording thread's own row.
//!
//! Invariants:
//! - **Same exposition.** [`ShardedHistogram::render`] writes the HELP,
//!   TYPE, `_bucket{le=..}` (cumulative, `+Inf` last), `_sum` and `_count`
//!   lines with the exporter's own formatting helpers, so dashboards, rules
//!   and scrapes see what the exporter wrote for a histogram with the same
//!   bounds.
//! - **Consistent buckets.** One render reads each count once: the buckets
//!   are cumulative and `_count` equals the `+Inf` bucket even while threads
//!   record. `_sum` is read after them and may include a sample the buckets
//!   do not yet (Prometheus client libraries have the same race).
//! - **No false sharing.** Rows are 256-byte aligned; a thread keeps the
//!   row it was given first ([`SHARDS`] rows, taken in turn).
//! - **One series per name.** [`ShardedHistogram::register`] hands back the
//!   histogram already registered under a name (several servers in one test
//!   process share it, as they share the global recorder).

use indexmap::IndexMap;
use metrics::Key;
use metrics_exporter_prometheus::LabelSet;
use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Rows per histogram; threads beyond it share rows (still correct).
const SHARDS: usize = 16;
/// Slots per row: up to `SLOTS - 2` bounds, `+Inf`, and the sum.
const SLOTS: usize = 32;

#[repr(align(256))]
struct Row([AtomicU64; SLOTS]);

/// A histogram of durations, in seconds on the wire (see the module docs).
pub struct ShardedHistogram {
    name: &'static str,
    help: &'static str,
    /// Upper bounds in seconds, ascending, as rendered.
    bounds: Box<[f64]>,
    /// The same bounds in nanoseconds, for bucketing.
    bounds_nanos: Box<[u64]>,
    rows: Box<[Row]>,
}

static REGISTRY: Mutex<Vec<Arc<ShardedHistogram>>> = Mutex::new(Vec::new());
static NEXT_ROW: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ROW: usize = NEXT_ROW.fetch_add(1, Relaxed) % SHARDS;
}

impl ShardedHistogram {
    /// The histogram registered as `name`, made with `help` and `bounds`
    /// (seconds, ascending, at most 30) if it is the first. Rendered by
    /// [`super::Exporter::render`].
    ///
    /// # Panics
    /// If `bounds` is empty, longer than 30, or not strictly ascending.
    pub fn register(name: &'static str, help: &'static str, bounds: &[f64]) -> Arc<Self> {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = registry.iter().find(|h| h.name == name) {
            return Arc::clone(h);
        }
        let h = Arc::new(Self::new(name, help, bounds));
        registry.push(Arc::clone(&h));
        h
    }

    fn new(name: &'static str, help: &'static str, bounds: &[f64]) -> Self {
        assert!(
            !bounds.is_empty() && bounds.len() <= SLOTS - 2,
            "{name}: 1 to {} bounds",
            SLOTS - 2
        );
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "{name}: bounds ascend"
        );
        let bounds_nanos = bounds.iter().map(|b| (b * 1e9).round() as u64).collect();
        Self {
            name,
            help,
            bounds: bounds.into(),
            bounds_nanos,
            rows: (0..SHARDS)
                .map(|_| Row(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Counts one sample: `value <= bound` falls in that bound's bucket.
    pub fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_nanos.partition_point(|&b| b < nanos);
        let row = &self.rows[ROW.with(|r| *r)].0;
        row[bucket].fetch_add(1, Relaxed);
        row[SLOTS - 1].fetch_add(nanos, Relaxed);
    }

    /// Samples counted so far.
    pub fn count(&self) -> u64 {
        self.snapshot().0.iter().sum()
    }

    /// Per-bucket counts (not cumulative; `+Inf` last) and the sum in
    /// nanoseconds.
    fn snapshot(&self) -> (Vec<u64>, u64) {
        let n = self.bounds.len() + 1;
        let mut counts = vec![0u64; n];
        for row in self.rows.iter() {
            for (c, slot) in counts.iter_mut().zip(&row.0[..n]) {
                *c += slot.load(Relaxed);
            }
        }
        let sum = self.rows.iter().map(|r| r.0[SLOTS - 1].load(Relaxed)).sum();
        (counts, sum)
    }

    /// Appends the exposition lines (see the module docs).
    pub fn render(&self, out: &mut String) {
        let (counts, sum_nanos) = self.snapshot();
        let labels =
            LabelSet::from_key_and_global(&Key::from_static_name(self.name), &IndexMap::new());
        write_help_line(out, self.name, None, None, self.help);
        write_type_line(out, self.name, None, None, "histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&counts) {
            cumulative += count;
            let le = Some(("le", bound));
            write_metric_line(
                out,
                self.name,
                Some("bucket"),
                &labels,
                le,
                cumulative,
                None,
            );
        }
        cumulative += counts[self.bounds.len()];
        let inf = Some(("le", "+Inf"));
        write_metric_line(
            out,
            self.name,
            Some("bucket"),
            &labels,
            inf,
            cumulative,
            None,
        );
        let sum = sum_nanos as f64 / 1e9;
        write_metric_line::<&str, f64>(out, self.name, Some("sum"), &labels, None, sum, None);
        write_metric_line::<&str, u64>(
            out,
            self.name,
            Some("count"),
            &labels,
            None,
            cumulative,
            None,
        );
        out.push('\n');
    }
}

/// Every registered histogram, in registration order.
pub(super) fn registered() -> Vec<Arc<ShardedHistogram>> {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_le_inclusive_and_count_is_inf() {
        let h = ShardedHistogram::new("t_seconds", "help", &[0.001, 0.002]);
        for ms in [0, 1, 1, 2, 3] {
            h.record(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out);
        let want = "# HELP t_seconds help\n# TYPE t_seconds histogram\n\
            t_seconds_bucket{le=\"0.001\"} 3\n\
            t_seconds_bucket{le=\"0.002\"} 4\n\
            t_seconds_bucket{le=\"+Inf\"} 5\n\
            t_seconds_sum 0.007\n\
            t_seconds_count 5\n\n";
        assert_eq!(out, want);
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn threads_record_into_their_own_rows_and_the_render_sums_them() {
        let h = Arc::new(ShardedHistogram::new("u_seconds", "help", &[1.0]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.record(Duration::from_millis(500));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4000);
        let used = h.rows.iter().filter(|r| r.0[0].load(Relaxed) > 0).count();
        assert!(used >= 2, "4 threads recorded into {used} row(s)");
    }

    #[test]
    fn register_hands_back_the_first_histogram_of_a_name() {
        let a = ShardedHistogram::register("v_seconds", "help", &[1.0]);
        let b = ShardedHistogram::register("v_seconds", "other", &[2.0]);
        assert!(Arc::ptr_eq(&a, &b));
    }
}
