//! `soak` (`make soak`, `make soak-ci`): mixed load for a long time against
//! the release server and two release clients, then a verdict.
//!
//! Load: P gRPC publishers at a moderate total rate; one HTTP sender per
//! client; K stable gRPC subscribers and both clients' buffers (flushed every
//! 100 ms) as checked subscribers; churning streams on fresh connections; one
//! slow subscriber that never reads, is disconnected, checks its prefix and
//! comes back ([`crate::soak_load`], [`crate::soak_churn`]). RSS and fds of the three processes are
//! sampled every second ([`crate::soak_watch`]); [`crate::soak_verdict`] judges.
//!
//! Invariants (any failure exits non-zero): no send fails; every subscriber
//! that stayed connected got every acknowledged message once and in order;
//! churned streams are in order without duplicates; each slow round ends in
//! `RESOURCE_EXHAUSTED` after a gap-free prefix (and there is at least one
//! round in runs of 30 s or more); RSS and fds are flat after warm-up; every
//! process is alive at the end and exits 0 on SIGTERM.

use crate::cli::{SoakArgs, duration};
use crate::conn::{self, Readiness};
use crate::procs::Proc;
use crate::publisher::{self, Plan, PubStats};
use crate::soak_churn::{self, ChurnStats};
use crate::soak_load::{self, metric, scrape};
use crate::soak_verdict::{SoakReport, check, verdict};
use crate::soak_watch::{TrendReport, Watch};
use crate::subscriber::{self, Progress};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DRAIN_LIMIT: Duration = Duration::from_secs(15);

struct Procs {
    server: Proc,
    clients: Vec<Proc>,
    grpc: SocketAddr,
    metrics: SocketAddr,
    http: Vec<SocketAddr>,
}

pub(crate) fn run(args: SoakArgs) -> Result<(), String> {
    let run_for = duration(args.duration)?;
    let mut procs = start(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let pids = (
        procs.server.pid(),
        procs.clients.iter().map(Proc::pid).collect::<Vec<_>>(),
    );
    let mut report = runtime.block_on(soak(&args, run_for, &procs, pids))?;
    for (name, p) in [("server", &mut procs.server)]
        .into_iter()
        .chain(procs.clients.iter_mut().map(|c| ("client", c)))
    {
        if !p.alive() {
            report
                .violations
                .push(format!("{name} {} exited during the soak", p.pid()));
        }
    }
    let mut exits = Vec::new();
    for c in procs.clients {
        exits.push(("client", c.stop()));
    }
    exits.push(("server", procs.server.stop()));
    for (name, status) in exits {
        if !status.is_some_and(|s| s.success()) {
            report
                .violations
                .push(format!("{name} did not exit 0 on SIGTERM: {status:?}"));
        }
    }
    crate::report::emit("soak", &report, args.json.as_deref())?;
    if report.violations.is_empty() {
        println!(
            "soak passed: {} messages checked, 0 lost, 0 duplicated, 0 reordered",
            report.messages_checked
        );
        Ok(())
    } else {
        Err(format!(
            "soak failed:\n  {}",
            report.violations.join("\n  ")
        ))
    }
}

fn start(args: &SoakArgs) -> Result<Procs, String> {
    let bin = |name: &str| args.bin_dir.join(name);
    let server_env = [
        ("MESSENGER_SERVER_HOST", "127.0.0.1"),
        ("MESSENGER_SERVER_PORT", "0"),
        ("MESSENGER_METRICS_PORT", "0"),
    ];
    let server = Proc::spawn(
        "messenger-server",
        &bin("messenger-server"),
        &[],
        &server_env,
    )?;
    let grpc = server.wait_addr("grpc_addr")?;
    let metrics = server.wait_addr("metrics_addr")?;
    let grpc_str = grpc.to_string();
    let mut clients = Vec::new();
    let mut http = Vec::new();
    for i in 0..2 {
        let env = [
            ("MESSENGER_SERVER_ADDR", grpc_str.as_str()),
            ("MESSENGER_HTTP_HOST", "127.0.0.1"),
            ("MESSENGER_HTTP_PORT", "0"),
        ];
        let client = Proc::spawn(
            &format!("client{}", i + 1),
            &bin("messenger-client"),
            &[],
            &env,
        )?;
        http.push(client.wait_addr("http_addr")?);
        clients.push(client);
    }
    Ok(Procs {
        server,
        clients,
        grpc,
        metrics,
        http,
    })
}

async fn soak(
    args: &SoakArgs,
    run_for: Duration,
    p: &Procs,
    pids: (u32, Vec<u32>),
) -> Result<SoakReport, String> {
    let (pubs_n, k) = (args.publishers.max(1), args.subscribers.max(1));
    let publishers = pubs_n + p.http.len();
    let mut watches = vec![Watch::start("server", pids.0)];
    watches.extend(
        pids.1
            .iter()
            .enumerate()
            .map(|(i, pid)| Watch::start(&format!("client{}", i + 1), *pid)),
    );

    let stop = CancellationToken::new();
    let ready = Arc::new(Readiness::default());
    let progress: Vec<Arc<Progress>> = (0..k + p.http.len()).map(|_| Arc::default()).collect();
    let _stop_on_return = stop.clone().drop_guard();
    let subs: Vec<_> = {
        let connect = conn::connect_many(p.grpc, k);
        let channels = conn::phase("connect", conn::connect_limit(k), connect).await?;
        channels
            .into_iter()
            .enumerate()
            .map(|(i, ch)| {
                tokio::spawn(subscriber::run(
                    ch,
                    publishers,
                    ready.clone(),
                    progress[i].clone(),
                    stop.clone(),
                ))
            })
            .collect()
    };
    let setup_limit = Duration::from_secs(30);
    conn::phase("subscribe", setup_limit + conn::REQUEST_LIMIT, async {
        let probe = conn::connect(p.grpc).await?;
        conn::probe_until_confirmed(probe, &ready, k, setup_limit).await
    })
    .await?;

    let start = Instant::now();
    let end = start + run_for;
    let plan = Plan {
        start,
        end,
        rate: Some(args.rate.max(1e-3)),
        publishers: pubs_n,
        payload: args.payload,
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let connect = conn::connect_many(p.grpc, pubs_n);
    let mut senders: Vec<_> = conn::phase("connect", conn::connect_limit(pubs_n), connect)
        .await?
        .into_iter()
        .enumerate()
        .map(|(id, ch)| tokio::spawn(publisher::run(id, ch, plan, accepted.clone())))
        .collect();
    for (i, addr) in p.http.iter().enumerate() {
        senders.push(tokio::spawn(soak_load::http_sender(
            *addr,
            pubs_n + i,
            args.http_rate,
            end,
        )));
    }
    let flushers: Vec<_> = p
        .http
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            tokio::spawn(soak_load::client_flusher(
                *addr,
                publishers,
                progress[k + i].clone(),
                stop.clone(),
                None,
            ))
        })
        .collect();
    let churners: Vec<_> = (0..args.churners as u64)
        .map(|i| tokio::spawn(soak_churn::churner(p.grpc, i + 1, publishers, stop.clone())))
        .collect();
    let slow = tokio::spawn(soak_churn::slow_subscriber(p.grpc, p.metrics, stop.clone()));

    let mut last_line = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last_line.elapsed() >= Duration::from_secs(10) {
            last_line = Instant::now();
            let rss: Vec<String> = watches
                .iter()
                .map(|w| format!("{:.1}", w.rss_mib()))
                .collect();
            println!(
                "soak {:>5.0}s/{:.0}s: {} accepted over gRPC, RSS MiB server/client1/client2 {}",
                start.elapsed().as_secs_f64(),
                run_for.as_secs_f64(),
                accepted.load(Ordering::Relaxed),
                rss.join("/")
            );
        }
    }
    let warmup = run_for.as_secs_f64() / 4.0;
    let resources: Vec<TrendReport> = watches.iter().map(|w| w.report(warmup)).collect();
    let pub_stats = conn::phase("load", conn::REQUEST_LIMIT * 2, async {
        let mut pub_stats = Vec::new();
        for s in senders {
            pub_stats.push(s.await.map_err(|e| format!("sender task: {e}"))?);
        }
        Ok(pub_stats)
    })
    .await?;
    let acked: u64 = pub_stats.iter().map(PubStats::acked).sum();
    let drain = Instant::now();
    while drain.elapsed() < DRAIN_LIMIT
        && progress
            .iter()
            .any(|s| !s.ended.load(Ordering::Acquire) && s.distinct.load(Ordering::Relaxed) < acked)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut checked = Vec::new();
    for (i, task) in subs.into_iter().enumerate() {
        let s = task.await.map_err(|e| format!("subscriber task: {e}"))?;
        checked.push(check(
            format!("grpc-subscriber-{}", i + 1),
            &s,
            &pub_stats,
            s.ended.clone(),
        ));
    }
    for (i, task) in flushers.into_iter().enumerate() {
        let s = task.await.map_err(|e| format!("flusher task: {e}"))?;
        let text = scrape(p.http[i]).await?;
        let reconnects = metric(&text, "messenger_client_stream_reconnects_total").unwrap_or(0.0);
        let dropped = metric(&text, "messenger_client_dropped_total").unwrap_or(0.0);
        let note = s.ended.clone().or_else(|| {
            (reconnects > 0.0 || dropped > 0.0).then(|| {
                format!("{reconnects} stream reconnects, {dropped} dropped from the buffer")
            })
        });
        checked.push(check(
            format!("client{}-buffer", i + 1),
            &s,
            &pub_stats,
            note,
        ));
    }
    let mut churn = ChurnStats::default();
    for task in churners {
        let c = task.await.map_err(|e| format!("churn task: {e}"))?;
        churn.streams += c.streams;
        churn.messages += c.messages;
        churn.duplicated += c.duplicated;
        churn.reordered += c.reordered;
        churn.errors += c.errors;
        churn.first_error = churn.first_error.or(c.first_error);
    }
    let slow = slow.await.map_err(|e| format!("slow task: {e}"))?;
    Ok(verdict(
        run_for, &pub_stats, pubs_n, checked, churn, slow, resources,
    ))
}
