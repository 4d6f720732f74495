//! `idle`: N subscribers that only hold their streams open, to measure what
//! one subscriber costs the server in resident memory.
//!
//! The open-files soft limit is raised to the hard limit first; if N
//! connections still don't fit, the run stops with that message rather
//! than failing half-way. The `connect` and `subscribe` phases are bounded
//! ([`conn::phase`]); the settle phase is a fixed sampling window.

use crate::cli::IdleArgs;
use crate::conn::{self, PROBE_AUTHOR, Readiness};
use crate::procfs;
use crate::report;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use serde::Serialize;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// File descriptors kept free for everything but the connections.
const SPARE_FDS: u64 = 64;
/// How long RSS is sampled after setup; the peak of the samples is kept.
const SETTLE: Duration = Duration::from_millis(1000);

#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    pub(crate) server: String,
    pub(crate) subscribers: usize,
    pub(crate) connections: usize,
    pub(crate) open_files_limit: u64,
    pub(crate) setup_secs: f64,
    pub(crate) server_rss_before_bytes: u64,
    pub(crate) server_rss_after_bytes: u64,
    pub(crate) bytes_per_subscriber: f64,
    pub(crate) bench_cpu_seconds: f64,
}

pub(crate) async fn run(args: IdleArgs) -> Result<(), String> {
    let report = measure(&args).await?;
    report::emit("idle", &report, args.json.as_deref())
}

async fn measure(args: &IdleArgs) -> Result<IdleReport, String> {
    let n = args.subscribers;
    if n == 0 {
        return Err("--subscribers must be at least 1".to_owned());
    }
    let c = args.connections.unwrap_or(n).clamp(1, n);
    let limit = procfs::raise_nofile_limit();
    if c as u64 + SPARE_FDS > limit {
        return Err(format!(
            "{c} connections need {} open files but this process may open only {limit} \
             (hard limit); raise `ulimit -Hn` or pass fewer --connections",
            c as u64 + SPARE_FDS
        ));
    }
    let pid = args.server_pid;
    let before = procfs::rss_bytes(pid)
        .ok_or_else(|| format!("cannot read /proc/{pid}/status: is --server-pid right?"))?;
    let cpu_start = procfs::self_cpu_seconds();
    let started = Instant::now();
    let (channels, prober) = conn::phase("connect", conn::connect_limit(c + 1), async {
        let channels = conn::connect_many(args.server, c).await?;
        Ok((channels, conn::connect(args.server).await?))
    })
    .await?;
    let ready = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    for i in 0..n {
        tokio::spawn(hold(channels[i % c].clone(), ready.clone(), stop.clone()));
    }
    let setup_limit = Duration::from_secs(30 + n as u64 / 500);
    let probe = conn::probe_until_confirmed(prober, &ready, n, setup_limit);
    conn::phase("subscribe", setup_limit + conn::REQUEST_LIMIT, probe).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    let sampler = procfs::RssSampler::start(pid);
    tokio::time::sleep(SETTLE).await;
    let after = sampler.peak();
    Ok(IdleReport {
        server: args.server.to_string(),
        subscribers: n,
        connections: c,
        open_files_limit: limit,
        setup_secs,
        server_rss_before_bytes: before,
        server_rss_after_bytes: after,
        bytes_per_subscriber: after.saturating_sub(before) as f64 / n as f64,
        bench_cpu_seconds: procfs::self_cpu_seconds() - cpu_start,
    })
}

/// Subscribes, confirms on the first probe, then reads until `stop`.
async fn hold(channel: Channel, ready: Arc<Readiness>, stop: CancellationToken) {
    let mut client = MessengerServerClient::new(channel);
    let mut stop = pin!(stop.cancelled_owned());
    let mut stream = tokio::select! {
        () = &mut stop => return,
        r = client.read_messages(()) => match r {
            Ok(response) => response.into_inner(),
            Err(status) => return ready.fail(format!("ReadMessages refused: {status}")),
        },
    };
    let mut confirmed = false;
    loop {
        let next = tokio::select! {
            () = &mut stop => return,
            next = stream.message() => next,
        };
        match next {
            Ok(Some(msg)) if !confirmed && msg.author == PROBE_AUTHOR => {
                confirmed = true;
                ready.confirm();
            }
            Ok(Some(_)) => {}
            Ok(None) if !confirmed => return ready.fail("stream ended before a probe".to_owned()),
            Err(status) if !confirmed => return ready.fail(format!("stream failed: {status}")),
            Ok(None) | Err(_) => return,
        }
    }
}
