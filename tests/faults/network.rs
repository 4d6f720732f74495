//! Network faults through an in-test TCP proxy: a connection that goes
//! silent without a FIN is reaped by keepalive, and a slow link keeps working
//! with bounded memory.

use crate::{HEAVY, poll_until, status_of};
use messenger_tests::procs::{rss_of, spawn_client, spawn_server};
use messenger_tests::prom::{scrape, wait_metrics};
use messenger_tests::proxy::Proxy;
use messenger_tests::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reaps_a_half_open_subscriber_within_the_keepalive_window() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[
        ("MESSENGER_KEEPALIVE_INTERVAL_MS", "500"),
        ("MESSENGER_KEEPALIVE_TIMEOUT_MS", "500"),
    ])
    .await;
    let url = server.metrics_url();
    let proxy = Proxy::start(server.grpc_addr).await;
    let mut stream = subscribe_at(proxy.addr).await;
    wait_metrics(&url, "1 subscriber", |m| {
        m.value("messenger_subscribers", &[]) == Some(1.0)
    })
    .await;
    let sent = grpc_send(&mut server.grpc().await, "a", "before the stall")
        .await
        .unwrap();
    assert_eq!(read_n(&mut stream, 1).await[0].send_time, sent);

    proxy.stall_existing().await;
    let stalled = Instant::now();
    wait_metrics(&url, "half-open subscriber reaped", |m| {
        m.value("messenger_subscribers", &[]) == Some(0.0)
    })
    .await;
    let took = stalled.elapsed();
    println!(
        "half-open subscriber reaped {took:?} after the stall (interval 500 ms + timeout 500 ms)"
    );
    // interval + timeout, plus a scheduling margin for a loaded CI machine.
    assert!(took < Duration::from_secs(3), "{took:?}");
    let m = scrape(&url).await;
    assert_eq!(
        m.sum(
            "messenger_subscriber_disconnects_total",
            &[("reason", "slow")]
        ),
        0.0
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_link_keeps_the_client_working_with_bounded_memory() {
    const BLAST: usize = 4000;
    const RATE: u64 = 1024 * 1024;
    const CLIENT_RSS_BOUND: u64 = 64 * 1024 * 1024;
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[("MESSENGER_SUBSCRIBER_QUEUE", "64")]).await;
    let proxy = Proxy::start(server.grpc_addr).await;
    let client = spawn_client(proxy.addr, &[]).await;
    proxy.set_rate(RATE);
    let pid = client.proc.pid();

    // 4 MB at full speed into a 1 MiB/s link.
    let text = "y".repeat(1024);
    let mut grpc = server.grpc().await;
    let mut sent = Vec::with_capacity(BLAST);
    let mut peak = 0;
    for i in 0..BLAST {
        sent.push(grpc_send(&mut grpc, "blast", &text).await.unwrap());
        if i % 100 == 0 {
            peak = peak.max(rss_of(pid).unwrap_or(0));
        }
    }
    // The client keeps answering while its link is saturated.
    assert_eq!(
        status_of(&client.http, &client.url("/healthz")).await,
        Some(200)
    );
    let mut got: Vec<Msg> = Vec::new();
    let drained = Instant::now();
    loop {
        got.extend(client.flush().await);
        let m = scrape(&server.metrics_url()).await;
        let cut = m.sum(
            "messenger_subscriber_disconnects_total",
            &[("reason", "slow")],
        );
        if got.len() == BLAST || cut >= 1.0 {
            break;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(60),
            "{} of {BLAST}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(rss_of(pid).unwrap_or(0));
    let times: Vec<&String> = got.iter().map(|m| &m.send_time).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert!(
        got.iter().zip(&sent).all(|(m, s)| &m.send_time == s),
        "what arrived is a prefix of what was sent: no gap"
    );

    // A cut-off subscriber hears of it once it has read what was in flight,
    // then re-subscribes over the same slow link (messages of the gap are not
    // replayed, so the echo below is sent only after that).
    let (reconnects, _) = poll_until(
        "client subscribed again",
        Duration::from_secs(60),
        || async {
            let m = scrape(&client.metrics_url()).await;
            let reconnects = m.value("messenger_client_stream_reconnects_total", &[])?;
            let healed = got.len() == BLAST || reconnects >= 1.0;
            (healed && m.value("messenger_client_stream_connected", &[]) == Some(1.0))
                .then_some(reconnects)
        },
    )
    .await;
    let echo = client.send("client", "still working").await;
    let arrived = poll_until(
        "echo over the slow link",
        Duration::from_secs(30),
        || async {
            client
                .flush()
                .await
                .into_iter()
                .find(|m| m.send_time == echo)
        },
    )
    .await;
    peak = peak.max(rss_of(pid).unwrap_or(0));
    println!(
        "slow link {} KiB/s: {} of {BLAST} blasted messages arrived in order with no gap \
         (the rest cut off as a slow consumer; {} reconnects); after re-subscribing, an echo \
         through the client arrived in {:?}; client peak RSS {:.1} MiB (bound {} MiB)",
        RATE / 1024,
        got.len(),
        reconnects,
        arrived.1,
        peak as f64 / 1048576.0,
        CLIENT_RSS_BOUND / 1048576
    );
    assert!(peak < CLIENT_RSS_BOUND, "client RSS {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_detects_a_stalled_server_connection_and_resubscribes() {
    let _heavy = HEAVY.lock().await;
    // The server's own keepalive is left at its 20 s default: the client must
    // notice by itself.
    let server = spawn_server(&[]).await;
    let proxy = Proxy::start(server.grpc_addr).await;
    let client = spawn_client(
        proxy.addr,
        &[
            ("MESSENGER_KEEPALIVE_INTERVAL_MS", "500"),
            ("MESSENGER_KEEPALIVE_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let sent = client.send("before", "stall").await;
    assert_eq!(client.collect(1).await[0].send_time, sent);

    proxy.stall_existing().await;
    let stalled = Instant::now();
    let (_, took) = poll_until("client re-subscribed", Duration::from_secs(10), || async {
        let m = scrape(&client.metrics_url()).await;
        let back = m.value("messenger_client_stream_reconnects_total", &[]) >= Some(1.0)
            && m.value("messenger_client_stream_connected", &[]) == Some(1.0);
        back.then_some(())
    })
    .await;
    let sent = client.send("after", "stall").await;
    assert_eq!(client.collect(1).await[0].send_time, sent);
    assert!(*proxy.accepted().borrow() >= 2, "a new connection was made");
    println!(
        "client noticed a stalled server connection and re-subscribed in {took:?} \
         (keepalive 500 ms + 500 ms); {:?} until it delivered again",
        stalled.elapsed()
    );
}
