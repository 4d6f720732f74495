//! Resource trends of the soak's processes: RSS (`/proc/PID/status`) and open
//! file descriptors (`/proc/PID/fd`) sampled every second.
//!
//! "Flat" is judged after warm-up (the first quarter of the run), comparing
//! the first five samples after warm-up with the last five: the mean RSS may
//! grow by at most [`RSS_GROWTH_RATIO`] plus [`RSS_GROWTH_SLACK`] (allocator
//! retention, histogram growth); the fewest fds at the end may exceed the most
//! in the first window by at most [`FD_GROWTH`] (connections being churned at
//! the moment of a sample). The least-squares
//! slope after warm-up is reported too.

use crate::procfs::rss_bytes;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) const RSS_GROWTH_RATIO: f64 = 1.25;
pub(crate) const RSS_GROWTH_SLACK: u64 = 4 << 20;
pub(crate) const FD_GROWTH: u64 = 16;
const EVERY: Duration = Duration::from_secs(1);
const WINDOW: usize = 5;

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss: u64,
    fds: u64,
}

/// Number of open file descriptors of `pid`.
pub(crate) fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// Samples one process until dropped.
pub(crate) struct Watch {
    name: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl Watch {
    pub(crate) fn start(name: &str, pid: u32) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let shared = samples.clone();
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let (Some(rss), Some(fds)) = (rss_bytes(pid), fd_count(pid)) else {
                    return; // the process is gone; the report says so
                };
                let secs = start.elapsed().as_secs_f64();
                shared
                    .lock()
                    .expect("never poisoned")
                    .push(Sample { secs, rss, fds });
            }
        });
        Self {
            name: name.to_owned(),
            samples,
            task,
        }
    }

    /// The latest RSS in MiB, for progress lines.
    pub(crate) fn rss_mib(&self) -> f64 {
        let samples = self.samples.lock().expect("never poisoned");
        samples.last().map_or(0.0, |s| s.rss as f64 / 1048576.0)
    }

    /// The trend so far; `warmup_secs` is where the flat part starts.
    pub(crate) fn report(&self, warmup_secs: f64) -> TrendReport {
        let samples = self.samples.lock().expect("never poisoned").clone();
        trend(&self.name, &samples, warmup_secs)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct TrendReport {
    pub(crate) process: String,
    pub(crate) samples: usize,
    pub(crate) rss_first_mib: f64,
    /// Mean of the first samples after warm-up.
    pub(crate) rss_warm_mib: f64,
    /// Mean of the last samples.
    pub(crate) rss_end_mib: f64,
    pub(crate) rss_max_mib: f64,
    pub(crate) rss_limit_mib: f64,
    pub(crate) rss_slope_kib_per_min: f64,
    pub(crate) fds_warm: u64,
    pub(crate) fds_end: u64,
    pub(crate) fds_max: u64,
    pub(crate) flat: bool,
}

fn mib(bytes: f64) -> f64 {
    (bytes / 1048576.0 * 100.0).round() / 100.0
}

fn trend(name: &str, samples: &[Sample], warmup_secs: f64) -> TrendReport {
    let after: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.secs >= warmup_secs)
        .collect();
    let mean = |xs: &[Sample], f: fn(&Sample) -> u64| {
        xs.iter().map(|s| f(s) as f64).sum::<f64>() / xs.len().max(1) as f64
    };
    let warm = &after[..after.len().min(WINDOW)];
    let end = &after[after.len().saturating_sub(WINDOW)..];
    let (rss_warm, rss_end) = (mean(warm, |s| s.rss), mean(end, |s| s.rss));
    let rss_limit = rss_warm * RSS_GROWTH_RATIO + RSS_GROWTH_SLACK as f64;
    let fds_warm = warm.iter().map(|s| s.fds).max().unwrap_or(0);
    let fds_end = end.iter().map(|s| s.fds).min().unwrap_or(0);
    let enough = after.len() >= 2 * WINDOW;
    TrendReport {
        process: name.to_owned(),
        samples: samples.len(),
        rss_first_mib: mib(samples.first().map_or(0.0, |s| s.rss as f64)),
        rss_warm_mib: mib(rss_warm),
        rss_end_mib: mib(rss_end),
        rss_max_mib: mib(samples.iter().map(|s| s.rss).max().unwrap_or(0) as f64),
        rss_limit_mib: mib(rss_limit),
        rss_slope_kib_per_min: (slope(&after) * 60.0 / 1024.0 * 10.0).round() / 10.0,
        fds_warm,
        fds_end,
        fds_max: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        flat: enough && rss_end <= rss_limit && fds_end <= fds_warm + FD_GROWTH,
    }
}

/// Least-squares slope of RSS over time, bytes per second.
fn slope(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = samples.iter().map(|s| s.secs).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.rss as f64).sum::<f64>() / n;
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.secs - mx) * (s.rss as f64 - my))
        .sum();
    let sxx: f64 = samples.iter().map(|s| (s.secs - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0..100)
            .map(|i| Sample {
                secs: f64::from(i),
                rss: rss(f64::from(i)),
                fds: 20,
            })
            .collect()
    }

    #[test]
    fn flat_and_growing_series() {
        let flat = trend("p", &series(|_| 50 << 20), 25.0);
        assert!(flat.flat && flat.rss_slope_kib_per_min == 0.0);
        let leak = trend("p", &series(|t| (50 << 20) + (t as u64) * (1 << 20)), 25.0);
        assert!(!leak.flat, "{leak:?}");
        assert!((leak.rss_slope_kib_per_min - 60.0 * 1024.0).abs() < 1.0);
        assert!(
            !trend("p", &series(|_| 1)[..5], 0.0).flat,
            "too few samples"
        );
    }
}
