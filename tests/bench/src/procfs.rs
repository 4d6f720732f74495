//! Process figures: this process's CPU time (getrusage), another process's
//! CPU time and resident memory (/proc/PID), a periodic RSS sampler, and the
//! open-files limit.
//!
//! Peak RSS is sampled from `VmRSS` rather than read from `VmHWM`, because
//! `VmHWM` covers the whole process lifetime, not just the measured run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// User plus system CPU seconds this process has used so far.
pub(crate) fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// User plus system CPU seconds of `pid`, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 50 ms and keeps the peak; stops when dropped.
pub(crate) struct RssSampler {
    peak: Arc<AtomicU64>,
    pid: u32,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let shared = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Some(rss) = rss_bytes(pid) {
                    shared.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        Self { peak, pid, task }
    }

    /// The highest RSS seen so far, including one last sample now.
    pub(crate) fn peak(&self) -> u64 {
        if let Some(rss) = rss_bytes(self.pid) {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server's CPU time and RSS over one run, if a pid was given.
pub(crate) struct ServerWatch {
    pid: u32,
    cpu_start: f64,
    rss: RssSampler,
}

impl ServerWatch {
    pub(crate) fn start(pid: Option<u32>) -> Result<Option<Self>, String> {
        let Some(pid) = pid else { return Ok(None) };
        let cpu_start = cpu_seconds(pid)
            .ok_or_else(|| format!("cannot read /proc/{pid}/stat: is --server-pid right?"))?;
        Ok(Some(Self {
            pid,
            cpu_start,
            rss: RssSampler::start(pid),
        }))
    }

    /// (CPU seconds used since start, peak RSS bytes).
    pub(crate) fn finish(&self) -> (f64, u64) {
        let cpu = cpu_seconds(self.pid).map_or(0.0, |now| now - self.cpu_start);
        (cpu, self.rss.peak())
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur as u64;
            }
        }
        lim.rlim_cur as u64
    }
}
