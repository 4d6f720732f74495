//! A client never loses a message across a reconnect: the real binaries, a
//! link that goes down and comes back (an in-test TCP proxy), and a client
//! frozen until the server cuts it off as slow. Each time the client resumes
//! from the server's history and ends up identical to a client that never
//! broke, with no duplicate.

use crate::{HEAVY, poll_until};
use messenger_tests::procs::{ClientProc, rss_of, spawn_client, spawn_server};
use messenger_tests::prom::{Metrics, scrape};
use messenger_tests::proxy::Proxy;
use messenger_tests::*;
use std::time::{Duration, Instant};

/// How long the proxy refuses connections (the scenario).
const OUTAGE: Duration = Duration::from_millis(1500);

fn recovered(m: &Metrics) -> f64 {
    m.sum("messenger_client_resumes_total", &[("result", "recovered")])
}

/// Flushes `client` until it holds `n` messages, allowing a loaded machine 60 s.
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
    // Anything past n would be a duplicate.
    tokio::time::sleep(Duration::from_millis(100)).await;
    out.extend(client.flush().await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_behind_a_broken_link_recovers_every_message() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let proxy = Proxy::start(server.grpc_addr).await;
    let client1 = spawn_client(proxy.addr, &[("OTEL_SERVICE_NAME", "client1")]).await;
    let client2 = spawn_client(server.grpc_addr, &[("OTEL_SERVICE_NAME", "client2")]).await;
    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(client2.send("bob", &format!("before {i}")).await);
    }
    let cut = Instant::now();
    proxy.cut().await;
    for i in 0..200 {
        sent.push(client2.send("bob", &format!("during {i}")).await);
    }
    let sending = cut.elapsed();
    assert!(
        sending < OUTAGE,
        "200 sends took {sending:?}, longer than the outage"
    );
    tokio::time::sleep(OUTAGE - sending).await;
    proxy.restore();
    let restored = Instant::now();
    for i in 0..50 {
        sent.push(client2.send("bob", &format!("after {i}")).await);
    }

    let got1 = collect_long(&client1, 350).await;
    let got2 = collect_long(&client2, 350).await;
    let caught_up = restored.elapsed();
    assert_eq!(got2.len(), 350);
    assert_eq!(
        got1, got2,
        "client1 holds exactly client2's messages, in the same order"
    );
    let times: Vec<&String> = got1.iter().map(|m| &m.send_time).collect();
    assert_eq!(
        times,
        sent.iter().collect::<Vec<_>>(),
        "every acknowledged send, in order"
    );
    let m = scrape(&client1.metrics_url()).await;
    assert!(recovered(&m) >= 1.0, "the resume was counted as recovered");
    assert_eq!(
        m.sum("messenger_client_resumes_total", &[("result", "gap")]),
        0.0
    );
    let from_history = m
        .value("messenger_client_recovered_messages_total", &[])
        .unwrap_or(0.0);
    assert!(
        from_history >= 200.0,
        "the 200 of the outage came from history: {from_history}"
    );
    println!(
        "broken link: client1 behind a proxy that cut every connection and refused new ones \
         for {OUTAGE:?} while 200 messages went through client2: it holds all 350 (as client2), \
         {from_history} recovered from history, {} resume(s), caught up {caught_up:?} after the \
         link came back",
        recovered(&m)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_as_slow_resumes_without_loss() {
    const MESSAGES: usize = 2000;
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[("MESSENGER_SUBSCRIBER_QUEUE", "16")]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let text = "z".repeat(4096);
    let mut grpc = server.grpc().await;
    client.proc.pause();
    let mut sent = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        sent.push(grpc_send(&mut grpc, "blast", &text).await.unwrap());
    }
    let m = scrape(&server.metrics_url()).await;
    let slow = m.sum(
        "messenger_subscriber_disconnects_total",
        &[("reason", "slow")],
    );
    client.proc.resume();
    assert_eq!(slow, 1.0, "the frozen client's queue of 16 overflowed");

    let got = collect_long(&client, MESSAGES).await;
    let times: Vec<String> = got.into_iter().map(|m| m.send_time).collect();
    assert_eq!(times, sent, "every message, in order, none twice");
    let (m, took) = poll_until("resume counted", Duration::from_secs(10), || async {
        let m = scrape(&client.metrics_url()).await;
        (recovered(&m) >= 1.0).then_some(m)
    })
    .await;
    let from_history = m
        .value("messenger_client_recovered_messages_total", &[])
        .unwrap_or(0.0);
    println!(
        "slow cut: a client frozen while {MESSAGES} x 4 KiB were sent was cut off as slow, \
         resumed and holds all {MESSAGES} ({from_history} from history; resume counted within {took:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_cost_and_resume_latency() {
    const FILL: usize = 100_000;
    const SENDERS: usize = 8;
    const GAP: u64 = 10_000;
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let pid = server.proc.pid();
    // Warm the allocator and the connections with a first round, then measure a second one.
    let text = "h".repeat(64);
    let fill = |n: usize| {
        let text = text.clone();
        let server = &server;
        async move {
            let mut tasks = Vec::new();
            for _ in 0..SENDERS {
                let mut grpc = server.grpc().await;
                let text = text.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..n / SENDERS {
                        grpc_send(&mut grpc, "", &text).await.expect("send");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    fill(1_000).await;
    let before = rss_of(pid).expect("server RSS");
    fill(FILL).await;
    let after = rss_of(pid).expect("server RSS");
    let m = scrape(&server.metrics_url()).await;
    let held = m.value("messenger_history_messages", &[]).unwrap();
    let bytes = m.value("messenger_history_bytes", &[]).unwrap();
    assert_eq!(
        held, FILL as f64,
        "MESSENGER_HISTORY_SIZE (100,000) binds before 64 MiB"
    );

    // Resume 10,000 messages back: from the request to the last replayed one.
    let mut client = server.grpc().await;
    let head = (FILL + 1_000) as u64;
    let (_, epoch) = {
        let mut r = tonic::Request::new(());
        r.metadata_mut()
            .insert("messenger-offsets", "1".parse().unwrap());
        let response = client.read_messages(r).await.unwrap();
        let epoch = response
            .metadata()
            .get("messenger-epoch")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        (response, epoch)
    };
    let started = Instant::now();
    let mut r = tonic::Request::new(());
    let since = format!("{epoch}:{}", head - GAP);
    r.metadata_mut()
        .insert("messenger-since", since.parse().unwrap());
    let mut stream = within("resume headers", client.read_messages(r))
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    within("10,000 replayed", async {
        while last < head {
            last = stream.message().await.unwrap().expect("message").offset;
        }
    })
    .await;
    let resume = started.elapsed();
    let per_message = (after.saturating_sub(before)) as f64 / FILL as f64;
    println!(
        "history cost: {FILL} messages of 64 B grew the server's RSS by {:.1} MiB \
         ({per_message:.0} B per message; accounted {:.1} MiB for {held} held); \
         resume of a {GAP}-message gap: {resume:?} from request to the last replayed message",
        (after.saturating_sub(before)) as f64 / 1048576.0,
        bytes / 1048576.0,
    );
    assert!(resume < Duration::from_secs(5), "{resume:?}");
}
