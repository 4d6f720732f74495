//! The verdict of `soak-faults` ([`crate::soak_faults`]): each checked
//! reader (the clients' buffers and the resuming gRPC subscribers of
//! [`crate::soak_faults_subs`]) against the acknowledged messages, and the
//! recoveries.
//!
//! - **Lost**: acknowledged and never delivered to a reader. With
//!   `--min-replicas` 1 or more any loss is a violation; with 0 a loss is
//!   allowed only on a reader that reported a gap (a new epoch after a
//!   failover lost the last writes), never silently.
//! - **Offsets out of sequence** (subscribers): a message whose offset is not
//!   the previous one plus 1, with no gap reported in between: always a
//!   violation (a message skipped or repeated silently).
//! - **Duplicated** and **reordered** (by `sendTime`): always violations.
//!   Publishers never resend, so a message seen twice was delivered twice.
//! - Sends that failed are not acknowledged: a failed send that still
//!   arrives (an outcome the caller was told is unknown) is counted, not lost
//!   or duplicated.
//! - Every requested fault kind must have been injected in a run of 30 s or
//!   more; every recovery within [`crate::soak_faults::RECOVERY_LIMIT`].

use crate::cli::FaultsArgs;
use crate::fanout::missed_by;
use crate::publisher::PubStats;
use crate::soak_faults_inject::{FaultRecord, Kind};
use crate::soak_faults_subs::Checked;
use crate::subscriber::SubStats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub(crate) struct ClientCheck {
    name: String,
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    foreign: u64,
    gaps_reported: u64,
    delivered_unacknowledged: u64,
    /// The last error of the reader's stream or flush (a fault's trace, not
    /// a violation by itself).
    flush_error: Option<String>,
    /// Subscribers: re-subscriptions, and offsets out of sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    resumes: Option<u64>,
    out_of_sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_out_of_sequence: Option<String>,
}

impl ClientCheck {
    pub(crate) fn of(name: String, s: &SubStats, pubs: &[PubStats], gaps: u64) -> Self {
        let unacked = pubs
            .iter()
            .enumerate()
            .map(|(p, ps)| ps.failed.iter().filter(|&&seq| s.has(p, seq)).count() as u64)
            .sum();
        Self {
            name,
            received: s.distinct,
            lost: missed_by(s, pubs),
            duplicated: s.duplicated,
            reordered: s.reordered,
            foreign: s.foreign,
            gaps_reported: gaps,
            delivered_unacknowledged: unacked,
            flush_error: s.ended.clone(),
            resumes: None,
            out_of_sequence: 0,
            first_out_of_sequence: None,
        }
    }

    /// A resuming gRPC subscriber's check.
    pub(crate) fn of_subscriber(name: String, c: &Checked, pubs: &[PubStats]) -> Self {
        Self {
            resumes: Some(c.resumes),
            out_of_sequence: c.out_of_sequence,
            first_out_of_sequence: c.first_out_of_sequence.clone(),
            ..Self::of(name, &c.stats, pubs, c.gaps)
        }
    }
}

/// p50 and max of one kind's recoveries, in ms (sends: over every replica of every fault).
#[derive(Debug, Serialize)]
pub(crate) struct Recovery {
    count: usize,
    send_p50_ms: f64,
    send_max_ms: f64,
    delivery_p50_ms: f64,
    delivery_max_ms: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct FaultsReport {
    duration_secs: f64,
    min_replicas: u64,
    seed: u64,
    fault_kinds: Vec<&'static str>,
    pub(crate) faults: Vec<FaultRecord>,
    /// Longest time between two fault injections (the first counted from
    /// the start of the load).
    pub(crate) max_fault_interval_secs: f64,
    recovery: BTreeMap<&'static str, Recovery>,
    accepted_grpc: u64,
    accepted_http: u64,
    sends_failed: u64,
    send_error: Option<String>,
    clients: Vec<ClientCheck>,
    /// Checked gRPC subscribers, over both replicas.
    pub(crate) grpc_subscribers: usize,
    subscribers: Vec<ClientCheck>,
    pub(crate) lost: u64,
    duplicated: u64,
    reordered: u64,
    pub(crate) gaps_reported: u64,
    delivered_unacknowledged: u64,
    /// Deliveries compared against the acknowledged messages.
    pub(crate) deliveries_checked: u64,
    pub(crate) deliveries_checked_per_sec: f64,
    pub(crate) violations: Vec<String>,
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn verdict(
    args: &FaultsArgs,
    run_for: Duration,
    seed: u64,
    kinds: &[Kind],
    pubs: &[PubStats],
    grpc_publishers: usize,
    [clients, subscribers]: [Vec<ClientCheck>; 2],
    faults: Vec<FaultRecord>,
    mut violations: Vec<String>,
) -> FaultsReport {
    for c in clients.iter().chain(&subscribers) {
        if c.out_of_sequence > 0 {
            violations.push(format!(
                "{}: {} offsets out of sequence with no gap reported (first: {})",
                c.name,
                c.out_of_sequence,
                c.first_out_of_sequence.as_deref().unwrap_or("-")
            ));
        }
        if c.duplicated + c.reordered + c.foreign > 0 {
            violations.push(format!(
                "{}: {} duplicated, {} reordered, {} foreign",
                c.name, c.duplicated, c.reordered, c.foreign
            ));
        }
        if c.lost > 0 && args.min_replicas > 0 {
            violations.push(format!(
                "{}: {} acknowledged messages lost with MIN_REPLICAS {} ({} gaps reported)",
                c.name, c.lost, args.min_replicas, c.gaps_reported
            ));
        } else if c.lost > 0 && c.gaps_reported == 0 {
            violations.push(format!(
                "{}: {} acknowledged messages lost silently (no gap reported)",
                c.name, c.lost
            ));
        }
    }
    let mut recovery = BTreeMap::new();
    for kind in kinds {
        let mine: Vec<&FaultRecord> = faults.iter().filter(|f| f.kind == kind.name()).collect();
        if mine.is_empty() && run_for >= Duration::from_secs(30) {
            violations.push(format!("no {} fault was injected", kind.name()));
        }
        let (send_p50_ms, send_max_ms) = p50_max(
            mine.iter()
                .flat_map(|f| f.send_recovery_ms.iter().copied())
                .collect(),
        );
        let (delivery_p50_ms, delivery_max_ms) =
            p50_max(mine.iter().filter_map(|f| f.delivery_recovery_ms).collect());
        recovery.insert(
            kind.name(),
            Recovery {
                count: mine.len(),
                send_p50_ms,
                send_max_ms,
                delivery_p50_ms,
                delivery_max_ms,
            },
        );
    }
    let acked =
        |range: std::ops::Range<usize>| pubs[range].iter().map(PubStats::acked).sum::<u64>();
    let all = || clients.iter().chain(&subscribers);
    let deliveries_checked: u64 = all().map(|c| c.received).sum();
    let max_fault_interval_secs = faults
        .iter()
        .scan(0.0, |last, f| {
            Some(f.at_secs - std::mem::replace(last, f.at_secs))
        })
        .fold(0.0, f64::max);
    FaultsReport {
        max_fault_interval_secs,
        duration_secs: run_for.as_secs_f64(),
        min_replicas: args.min_replicas,
        seed,
        fault_kinds: kinds.iter().map(|k| k.name()).collect(),
        recovery,
        accepted_grpc: acked(0..grpc_publishers),
        accepted_http: acked(grpc_publishers..pubs.len()),
        sends_failed: pubs.iter().map(|s| s.failed.len() as u64).sum(),
        send_error: pubs.iter().find_map(|s| s.first_error.clone()),
        lost: all().map(|c| c.lost).sum(),
        duplicated: all().map(|c| c.duplicated).sum(),
        reordered: all().map(|c| c.reordered).sum(),
        gaps_reported: all().map(|c| c.gaps_reported).sum(),
        delivered_unacknowledged: all().map(|c| c.delivered_unacknowledged).sum(),
        deliveries_checked,
        deliveries_checked_per_sec: deliveries_checked as f64 / run_for.as_secs_f64(),
        grpc_subscribers: subscribers.len(),
        clients,
        subscribers,
        faults,
        violations,
    }
}
