//! A replica killed (-9) while messages flow through another, then restarted
//! on its port: it reloads the stream's tail from Redis, and its real
//! `messenger-client` resumes from there, so it holds every acknowledged
//! message once, in order: 0 lost, 0 duplicated.

use crate::{HEAVY, replica};
use messenger_tests::procs::{ClientProc, spawn_client};
use messenger_tests::prom::scrape;
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOTAL: usize = 600;
const KILL_AT: usize = 100;
const RESTART_AT: usize = 300;

/// Flushes `client` until it holds `n` messages (bounded), then once more
/// after a pause: anything past `n` would be a duplicate.
async fn collect_all(client: &ClientProc, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        out.extend(client.flush().await);
        if out.len() < n {
            assert!(Instant::now() < deadline, "{} of {n}", out.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    out.extend(client.flush().await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_comes_back_and_its_client_misses_nothing() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let url = redis.url();
    let port = free_port().to_string();
    let fixed = [("MESSENGER_SERVER_PORT", port.as_str())];
    let a = replica("a", &url, &fixed).await;
    let b = replica("b", &url, &[]).await;
    let client = spawn_client(a.grpc_addr, &[("OTEL_SERVICE_NAME", "client-a")]).await;

    let (count, mut counted) = watch::channel(0usize);
    let mut grpc = b.grpc().await;
    let sender = tokio::spawn(async move {
        let mut acked = Vec::with_capacity(TOTAL);
        for i in 0..TOTAL {
            let text = format!("m{i}");
            let send_time = grpc_send(&mut grpc, "bob", &text)
                .await
                .expect("send via B");
            acked.push(Msg {
                author: "bob".into(),
                text,
                send_time,
            });
            count.send_replace(i + 1);
            // Keep the flow going for the whole outage rather than finishing first.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        acked
    });

    within("first messages", counted.wait_for(|n| *n >= KILL_AT))
        .await
        .unwrap();
    a.proc.kill9_and_wait().await;
    let killed_at = *counted.borrow();
    within(
        "messages during the outage",
        counted.wait_for(|n| *n >= RESTART_AT),
    )
    .await
    .unwrap();
    let restarted = Instant::now();
    let a2 = replica("a", &url, &fixed).await;
    let missed = *counted.borrow() - killed_at;
    let acked = within("all sends", sender).await.unwrap();

    let got = collect_all(&client, TOTAL).await;
    let caught_up = restarted.elapsed();
    assert_eq!(got.len(), TOTAL, "no message twice");
    assert_eq!(got, acked, "every acknowledged message, in order");
    let m = scrape(&client.metrics_url()).await;
    let recovered = m
        .value("messenger_client_recovered_messages_total", &[])
        .unwrap_or(0.0);
    assert_eq!(
        m.sum("messenger_client_resumes_total", &[("result", "gap")]),
        0.0,
        "resumed without a gap"
    );
    assert!(
        recovered >= missed as f64,
        "the {missed} sent while A was down came from history: {recovered}"
    );
    let loaded = a2
        .proc
        .lines()
        .iter()
        .any(|l| l.text.contains("broker stream loaded"));
    assert!(loaded, "the restarted replica loaded the stream's tail");
    println!(
        "replica loss: A killed after {killed_at} acks, restarted after {missed} more were sent \
         through B; A's client holds all {TOTAL} once, in order ({recovered} recovered from history, \
         0 lost, 0 duplicated), caught up {caught_up:?} after the restart"
    );
}
