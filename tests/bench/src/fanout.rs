//! `fanout`: K subscribers over C connections, P publishers, one measured
//! window. Setup confirms every subscriber with probes; then the publishers
//! run for the duration; then subscribers drain (bounded by [`DRAIN_LIMIT`])
//! and every stream is checked against the acknowledged messages.
//!
//! Each phase (`connect`, `subscribe`, `load`, `drain`, `stop`) is bounded
//! ([`conn::phase`]); a run in which no message was acknowledged fails.
//!
//! `bench_cpu_seconds` and the server figures cover the load and drain
//! window only, not connection setup. With `--replica`, connections
//! alternate between the two servers, the server CPU is both replicas' sum
//! and the peak RSS the larger one.
//!
//! `--pace` sets when a publisher sends its next message ([`crate::pace`]):
//! on the acknowledgement (`ack`, the default), or once subscriber 0 also has
//! the previous one (`first-receipt`, the rule of `messenger-bench-nats`).
//! With `--rate` the publishers' schedules are staggered into one uniform
//! rate. The report names both (`pace`, `rate`).

use crate::cli::{FanoutArgs, duration};
use crate::conn::{self, Readiness};
use crate::pace::{Pace, Rule};
use crate::procfs::{self, ServerWatch};
use crate::publisher::{self, Plan, PubStats};
use crate::report::{self, P50P99, Percentiles, Spread};
use crate::subscriber::{self, Progress, SubStats};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The interval of `delivery_latency_ms`, as `messenger-bench-nats` reports
/// its own (the same words: the two are compared).
pub(crate) const LATENCY_FROM: &str = "publisher's send to subscriber's receipt, bench clock";
/// Longest wait for subscribers to receive what was acknowledged.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Longest wait for the tasks to end once stopped or past their deadline.
const STOP_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub(crate) struct FanoutReport {
    pub(crate) server: String,
    /// The second replica, when the load was spread over two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replica: Option<String>,
    pub(crate) subscribers: usize,
    pub(crate) publishers: usize,
    pub(crate) connections: usize,
    pub(crate) duration_secs: f64,
    pub(crate) rate: Option<f64>,
    /// The pacing rule ([`Rule`]): `ack` or `first-receipt`.
    pub(crate) pace: &'static str,
    pub(crate) payload_bytes: usize,
    pub(crate) accepted: u64,
    pub(crate) accepted_per_sec: f64,
    pub(crate) deliveries: u64,
    pub(crate) deliveries_per_sec: f64,
    /// What `delivery_latency_ms` measures: [`LATENCY_FROM`].
    pub(crate) delivery_latency_from: &'static str,
    pub(crate) delivery_latency_ms: Percentiles,
    /// Each subscriber's own p50: the lowest and the highest.
    pub(crate) subscriber_p50_ms: Option<Spread>,
    pub(crate) send_latency_ms: P50P99,
    pub(crate) lost: u64,
    /// Of `lost`, the messages missed by subscribers that were disconnected.
    pub(crate) lost_by_disconnected: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) disconnected_subscribers: usize,
    pub(crate) disconnect_reason: Option<String>,
    pub(crate) send_errors: u64,
    pub(crate) send_error: Option<String>,
    pub(crate) drain_secs: f64,
    pub(crate) bench_cpu_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_peak_rss_bytes: Option<u64>,
}

pub(crate) async fn run(args: FanoutArgs) -> Result<(), String> {
    let report = measure(&args).await?;
    report::emit("fanout", &report, args.json.as_deref())
}

async fn measure(args: &FanoutArgs) -> Result<FanoutReport, String> {
    let run_for = duration(args.duration)?;
    let (k, p) = (args.subscribers, args.publishers);
    if k == 0 || p == 0 {
        return Err("--subscribers and --publishers must be at least 1".to_owned());
    }
    let c = args.connections.unwrap_or(k).clamp(1, k);
    let nofile = procfs::raise_nofile_limit();
    if (c + p + 64) as u64 > nofile {
        return Err(format!(
            "{c} connections don't fit the open-files limit {nofile}"
        ));
    }
    let servers: Vec<_> = std::iter::once(args.server).chain(args.replica).collect();
    let (sub_channels, pub_channels) = conn::phase("connect", conn::connect_limit(c + p), async {
        let subs = conn::connect_spread(&servers, c).await?;
        Ok((subs, conn::connect_spread(&servers, p).await?))
    })
    .await?;

    let ready = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let progress: Vec<Arc<Progress>> = (0..k).map(|_| Arc::default()).collect();
    let pace = (args.pace == Rule::FirstReceipt).then(|| Arc::new(Pace::new(p)));
    let subs: Vec<_> = (0..k)
        .map(|i| {
            let task = subscriber::run_pacing(
                sub_channels[i % c].clone(),
                p,
                ready.clone(),
                progress[i].clone(),
                stop.clone(),
                pace.clone().filter(|_| i == 0),
            );
            tokio::spawn(task)
        })
        .collect();
    let setup_limit = Duration::from_secs(30 + k as u64 / 100);
    let probe = conn::probe_until_confirmed(pub_channels[0].clone(), &ready, k, setup_limit);
    conn::phase("subscribe", setup_limit + conn::REQUEST_LIMIT, probe).await?;

    let watch = ServerWatch::start(args.server_pid)?;
    let replica_watch = ServerWatch::start(args.replica_pid)?;
    let cpu_start = procfs::self_cpu_seconds();
    let start = Instant::now();
    let plan = Plan {
        start,
        end: start + run_for,
        rate: args.rate,
        publishers: p,
        payload: args.payload,
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let pubs: Vec<_> = pub_channels
        .into_iter()
        .enumerate()
        .map(|(id, ch)| {
            let run = publisher::run_paced(id, ch, plan, accepted.clone(), pace.clone());
            tokio::spawn(run)
        })
        .collect();
    let bar = report::progress(&format!("fanout K={k}"), run_for);
    while Instant::now() < plan.end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!("{} accepted", accepted.load(Ordering::Relaxed)));
    }
    bar.finish_and_clear();
    // A publisher's last send may take up to REQUEST_LIMIT past the end.
    let pub_stats = conn::phase("load", conn::REQUEST_LIMIT + STOP_LIMIT, async {
        let mut stats = Vec::with_capacity(p);
        for task in pubs {
            stats.push(task.await.map_err(|e| format!("publisher task: {e}"))?);
        }
        Ok(stats)
    })
    .await?;
    let publish_secs = start.elapsed().as_secs_f64();
    let acked: u64 = pub_stats.iter().map(PubStats::acked).sum();
    if acked == 0 {
        let why = pub_stats.iter().find_map(|s| s.first_error.clone());
        return Err(format!(
            "phase 'load' failed: no message was acknowledged; first error: {}",
            why.unwrap_or_else(|| "none".to_owned())
        ));
    }

    let drain_start = Instant::now();
    while drain_start.elapsed() < DRAIN_LIMIT
        && progress
            .iter()
            .any(|s| !s.ended.load(Ordering::Acquire) && s.distinct.load(Ordering::Relaxed) < acked)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    stop.cancel();
    let sub_stats = conn::phase("stop", STOP_LIMIT, async {
        let mut stats = Vec::with_capacity(k);
        for task in subs {
            stats.push(task.await.map_err(|e| format!("subscriber task: {e}"))?);
        }
        Ok(stats)
    })
    .await?;
    let bench_cpu_seconds = procfs::self_cpu_seconds() - cpu_start;
    let server = watch.as_ref().map(ServerWatch::finish);
    let server = match (server, replica_watch.as_ref().map(ServerWatch::finish)) {
        (Some((cpu, rss)), Some((r_cpu, r_rss))) => Some((cpu + r_cpu, rss.max(r_rss))),
        (server, _) => server,
    };
    Ok(summarize(
        args,
        c,
        start,
        publish_secs,
        drain_secs,
        &pub_stats,
        &sub_stats,
        bench_cpu_seconds,
        server,
    ))
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    args: &FanoutArgs,
    connections: usize,
    start: Instant,
    publish_secs: f64,
    drain_secs: f64,
    pubs: &[PubStats],
    subs: &[SubStats],
    bench_cpu_seconds: f64,
    server: Option<(f64, u64)>,
) -> FanoutReport {
    let mut send_latency = report::histogram();
    for s in pubs {
        send_latency.add(&s.latency).expect("same histogram bounds");
    }
    let mut latency = report::histogram();
    let (mut lost, mut lost_by_disconnected, mut duplicated, mut reordered) = (0, 0, 0, 0);
    let mut deliveries = 0;
    let mut last_receipt = i128::MIN;
    let mut disconnected = 0;
    let mut disconnect_reason = None;
    for s in subs {
        latency.add(&s.latency).expect("same histogram bounds");
        let missed = missed_by(s, pubs);
        lost += missed;
        if let Some(why) = &s.ended {
            disconnected += 1;
            lost_by_disconnected += missed;
            disconnect_reason.get_or_insert_with(|| why.clone());
        }
        duplicated += s.duplicated;
        reordered += s.reordered;
        deliveries += s.distinct;
        last_receipt = last_receipt.max(s.last_receipt);
    }
    let accepted: u64 = pubs.iter().map(PubStats::acked).sum();
    // Deliveries count until the last one arrived (the drain included).
    let start_unix = messenger_proto::time::unix_nanos_now() - start.elapsed().as_nanos() as i128;
    let delivery_secs = ((last_receipt - start_unix) as f64 / 1e9).max(1e-3);
    FanoutReport {
        server: args.server.to_string(),
        replica: args.replica.map(|r| r.to_string()),
        subscribers: args.subscribers,
        publishers: args.publishers,
        connections,
        duration_secs: args.duration,
        rate: args.rate,
        pace: args.pace.as_str(),
        payload_bytes: args.payload.max(crate::message::HEADER_LEN),
        accepted,
        accepted_per_sec: accepted as f64 / publish_secs,
        deliveries,
        deliveries_per_sec: if deliveries == 0 {
            0.0
        } else {
            deliveries as f64 / delivery_secs
        },
        delivery_latency_from: LATENCY_FROM,
        delivery_latency_ms: Percentiles::of(&latency),
        subscriber_p50_ms: Spread::of_medians(subs.iter().map(|s| &s.latency)),
        send_latency_ms: P50P99::of(&send_latency),
        lost,
        lost_by_disconnected,
        duplicated,
        reordered,
        disconnected_subscribers: disconnected,
        disconnect_reason,
        send_errors: pubs.iter().map(|s| s.failed.len() as u64).sum(),
        send_error: pubs.iter().find_map(|s| s.first_error.clone()),
        drain_secs,
        bench_cpu_seconds,
        server_cpu_seconds: server.map(|s| s.0),
        server_peak_rss_bytes: server.map(|s| s.1),
    }
}

/// Acknowledged messages that subscriber `s` never received.
pub(crate) fn missed_by(s: &SubStats, pubs: &[PubStats]) -> u64 {
    pubs.iter()
        .enumerate()
        .map(|(p, ps)| {
            let got_failed = ps.failed.iter().filter(|&&seq| s.has(p, seq)).count() as u64;
            let got_acked = s.received_of(p, ps.sent) - got_failed;
            ps.acked() - got_acked
        })
        .sum()
}
