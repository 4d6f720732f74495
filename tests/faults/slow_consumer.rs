//! A subscriber that stops reading hurts nobody: 20,000 messages of 1 KiB go
//! to two real clients twice, once alone and once beside a raw subscriber that
//! never reads. The stuck one is cut off with RESOURCE_EXHAUSTED, the clients
//! hold all 20,000 in order both times, the server's RSS stays bounded and the
//! healthy subscribers' p99 delivery latency (from the server's histogram)
//! does not degrade by more than 2x.

use crate::HEAVY;
use messenger_tests::procs::{ClientProc, ServerProc, rss_of, spawn_client, spawn_server};
use messenger_tests::prom::{quantile_between, scrape};
use messenger_tests::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;

const MESSAGES: usize = 20_000;
const SENDERS: usize = 4;
/// Per sender: 4 x 1,000/s, a steady load below saturation, so latency shows
/// the fan-out and not the senders' own queueing.
const PERIOD: Duration = Duration::from_millis(1);
/// Server RSS bound during the run: 20,000 KiB of text pass through, but at
/// most one queue (1,024 shared messages) is ever held for the stuck one.
const RSS_BOUND: u64 = 96 * 1024 * 1024;
const DELIVERY: &str = "messenger_delivery_latency_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stuck_subscriber_is_cut_off_and_healthy_p99_holds() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let clients = [
        spawn_client(server.grpc_addr, &[("OTEL_SERVICE_NAME", "client1")]).await,
        spawn_client(server.grpc_addr, &[("OTEL_SERVICE_NAME", "client2")]).await,
    ];
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample_rss(server.proc.pid(), Arc::clone(&peak)));

    let before = scrape(&server.metrics_url()).await;
    let alone = run(&server, &clients, "alone").await;
    let between = scrape(&server.metrics_url()).await;

    let mut stuck = server.subscribe().await;
    let beside = run(&server, &clients, "stuck").await;
    let after = scrape(&server.metrics_url()).await;
    sampler.abort();

    // Cut off: a prefix, then RESOURCE_EXHAUSTED, never a gap.
    let (prefix, status) = within("stuck stream ends", async {
        let mut n = 0usize;
        loop {
            match stuck.message().await {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => break (n, status),
            }
        }
    })
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        after.sum(
            "messenger_subscriber_disconnects_total",
            &[("reason", "slow")]
        ),
        1.0
    );
    assert!(prefix < MESSAGES, "it was cut off, after {prefix} messages");

    let p99 = |from, to| quantile_between(from, to, DELIVERY, &[], 0.99).expect("observations");
    let (p99_alone, p99_stuck) = (p99(&before, &between), p99(&between, &after));
    let rss = peak.load(Ordering::Relaxed);
    println!(
        "slow consumer: {MESSAGES} x 1 KiB to 2 clients; alone {alone:.0} msg/s, \
         beside a stuck subscriber {beside:.0} msg/s; healthy p99 delivery latency \
         {:.3} ms alone vs {:.3} ms with the stuck one ({:.2}x); stuck one cut off after \
         {prefix} messages; server peak RSS {:.1} MiB (bound {} MiB)",
        p99_alone * 1e3,
        p99_stuck * 1e3,
        p99_stuck / p99_alone,
        rss as f64 / 1048576.0,
        RSS_BOUND / 1048576
    );
    assert!(
        rss > 0 && rss < RSS_BOUND,
        "server RSS {rss} over {RSS_BOUND}"
    );
    assert!(
        p99_stuck <= 2.0 * p99_alone,
        "p99 {p99_stuck} with a stuck subscriber vs {p99_alone} without"
    );
}

/// Sends MESSAGES of 1 KiB from SENDERS concurrent gRPC callers; checks both
/// clients then hold exactly those, in sendTime order. Returns messages/s.
async fn run(server: &ServerProc, clients: &[ClientProc; 2], tag: &str) -> f64 {
    let text = "x".repeat(1024);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let mut grpc = server.grpc().await;
        let text = text.clone();
        let tag = format!("{tag}-{s}");
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(MESSAGES / SENDERS);
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for _ in 0..MESSAGES / SENDERS {
                tick.tick().await;
                times.push(grpc_send(&mut grpc, &tag, &text).await.expect("send"));
            }
            times
        }));
    }
    let mut sent = Vec::with_capacity(MESSAGES);
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    sent.sort();
    for client in clients {
        let got: Vec<String> = collect_long(client, MESSAGES)
            .await
            .into_iter()
            .map(|m| m.send_time)
            .collect();
        assert!(
            got == sent,
            "{}: {tag}: every message, in order",
            client.proc.name()
        );
    }
    rate
}

/// Flushes until `n` messages arrived, allowing a minute on a loaded machine.
async fn collect_long(client: &ClientProc, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        out.extend(client.flush().await);
        assert!(
            Instant::now() < deadline,
            "{}: {} of {n}",
            client.proc.name(),
            out.len()
        );
        if out.len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(out.len(), n);
    out
}

/// Records the peak RSS of `pid` every 20 ms until aborted.
async fn sample_rss(pid: libc::pid_t, peak: Arc<AtomicU64>) {
    loop {
        if let Some(rss) = rss_of(pid) {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
