//! The soak's verdict: each checked subscriber against the acknowledged
//! messages, and the invariants of [`crate::soak`] turned into violations
//! (any violation makes the run exit non-zero).

use crate::fanout::missed_by;
use crate::publisher::PubStats;
use crate::soak_churn::{ChurnStats, SlowStats};
use crate::soak_watch::TrendReport;
use crate::subscriber::SubStats;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Checked {
    name: String,
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    stayed_connected: bool,
    note: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SoakReport {
    duration_secs: f64,
    accepted_grpc: u64,
    accepted_http: u64,
    send_errors: u64,
    send_error: Option<String>,
    /// Deliveries compared against the acknowledged messages.
    pub(crate) messages_checked: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    subscribers: Vec<Checked>,
    churn: ChurnStats,
    slow: SlowStats,
    resources: Vec<TrendReport>,
    pub(crate) violations: Vec<String>,
}

pub(crate) fn check(
    name: String,
    s: &SubStats,
    pubs: &[PubStats],
    note: Option<String>,
) -> Checked {
    Checked {
        name,
        received: s.distinct,
        lost: missed_by(s, pubs),
        duplicated: s.duplicated,
        reordered: s.reordered,
        stayed_connected: note.is_none(),
        note,
    }
}

pub(crate) fn verdict(
    run_for: Duration,
    pubs: &[PubStats],
    grpc_publishers: usize,
    subscribers: Vec<Checked>,
    churn: ChurnStats,
    slow: SlowStats,
    resources: Vec<TrendReport>,
) -> SoakReport {
    let mut violations = Vec::new();
    let send_errors: u64 = pubs.iter().map(|s| s.failed.len() as u64).sum();
    let send_error = pubs.iter().find_map(|s| s.first_error.clone());
    if send_errors > 0 {
        violations.push(format!("{send_errors} sends failed: {send_error:?}"));
    }
    let stayed: Vec<&Checked> = subscribers.iter().filter(|c| c.stayed_connected).collect();
    for c in &subscribers {
        if !c.stayed_connected {
            violations.push(format!("{} did not stay connected: {:?}", c.name, c.note));
        } else if c.lost + c.duplicated + c.reordered > 0 {
            violations.push(format!(
                "{}: {} lost, {} duplicated, {} reordered",
                c.name, c.lost, c.duplicated, c.reordered
            ));
        }
    }
    if churn.duplicated + churn.reordered > 0 || churn.errors > 0 {
        violations.push(format!(
            "churned streams: {} duplicated, {} reordered, {} errors ({:?})",
            churn.duplicated, churn.reordered, churn.errors, churn.first_error
        ));
    }
    if slow.bad_cycles > 0 || (run_for >= Duration::from_secs(30) && slow.cycles == 0) {
        violations.push(format!(
            "slow subscriber: {} good rounds, {} bad ({:?})",
            slow.cycles, slow.bad_cycles, slow.first_error
        ));
    }
    for r in &resources {
        if !r.flat {
            violations.push(format!(
                "{}: not flat after warm-up: RSS {} -> {} MiB (limit {}), fds {} -> {}",
                r.process, r.rss_warm_mib, r.rss_end_mib, r.rss_limit_mib, r.fds_warm, r.fds_end
            ));
        }
    }
    let acked =
        |range: std::ops::Range<usize>| pubs[range].iter().map(PubStats::acked).sum::<u64>();
    SoakReport {
        duration_secs: run_for.as_secs_f64(),
        accepted_grpc: acked(0..grpc_publishers),
        accepted_http: acked(grpc_publishers..pubs.len()),
        send_errors,
        send_error,
        messages_checked: stayed.iter().map(|c| c.received).sum::<u64>() + churn.messages,
        lost: stayed.iter().map(|c| c.lost).sum(),
        duplicated: stayed.iter().map(|c| c.duplicated).sum(),
        reordered: stayed.iter().map(|c| c.reordered).sum(),
        subscribers,
        churn,
        slow,
        resources,
        violations,
    }
}
