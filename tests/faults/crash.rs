//! Crashes heal by themselves: kill -9 the server and both clients report it
//! (503) at once and re-subscribe once it is back on the same port; kill -9 a
//! client and the server forgets its subscription.

use crate::HEAVY;
use crate::{poll_until, status_of};
use messenger_tests::procs::{spawn_client, spawn_server};
use messenger_tests::prom::{scrape, wait_metrics};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_clients_go_unready_then_heal_on_restart() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let port = server.grpc_addr.port().to_string();
    let clients = [
        spawn_client(server.grpc_addr, &[("OTEL_SERVICE_NAME", "client1")]).await,
        spawn_client(server.grpc_addr, &[("OTEL_SERVICE_NAME", "client2")]).await,
    ];
    clients[0].send("before", "crash").await;
    for c in &clients {
        assert_eq!(c.collect(1).await[0].text, "crash");
    }

    server.proc.kill9_and_wait().await;
    let killed = Instant::now();
    for c in &clients {
        let (_, took) = poll_until("/readyz 503", Duration::from_secs(2), || async {
            (status_of(&c.http, &c.url("/readyz")).await == Some(503)).then_some(())
        })
        .await;
        println!("{}: /readyz 503 {took:?} after kill -9", c.proc.name());
    }
    let started = Instant::now();
    let body = serde_json::json!({"author": "down", "text": "lost?"}).to_string();
    let (status, json) = clients[0].post("/sendMessage", body, &[]).await;
    let took = started.elapsed();
    println!("sendMessage while down: {status} {json} in {took:?}");
    assert_eq!(status, 503, "{json}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    assert!(
        took < Duration::from_secs(5),
        "answered within the 5 s send deadline"
    );

    let restarted = spawn_server(&[("MESSENGER_SERVER_PORT", port.as_str())]).await;
    assert_eq!(restarted.grpc_addr, server.grpc_addr);
    let up = Instant::now();
    for c in &clients {
        poll_until("/readyz 200", Duration::from_secs(5), || async {
            (status_of(&c.http, &c.url("/readyz")).await == Some(200)).then_some(())
        })
        .await;
        println!(
            "{}: ready again {:?} after the restart ({:?} after the kill)",
            c.proc.name(),
            up.elapsed(),
            killed.elapsed()
        );
    }
    let sent = clients[1].send("after", "healed").await;
    for c in &clients {
        let got = c.collect(1).await;
        assert_eq!(
            (got[0].text.as_str(), got[0].send_time.as_str()),
            ("healed", sent.as_str())
        );
        let m = scrape(&c.metrics_url()).await;
        let reconnects = m
            .value("messenger_client_stream_reconnects_total", &[])
            .unwrap();
        assert!(
            reconnects >= 1.0,
            "{}: reconnects {reconnects}",
            c.proc.name()
        );
        assert_eq!(m.value("messenger_client_stream_connected", &[]), Some(1.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill9_is_unsubscribed_within_the_keepalive_window() {
    let _heavy = HEAVY.lock().await;
    // interval + timeout = 2 s: the window for a peer that cannot send a FIN.
    let server = spawn_server(&[
        ("MESSENGER_KEEPALIVE_INTERVAL_MS", "1000"),
        ("MESSENGER_KEEPALIVE_TIMEOUT_MS", "1000"),
    ])
    .await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let url = server.metrics_url();
    wait_metrics(&url, "1 subscriber", |m| {
        m.value("messenger_subscribers", &[]) == Some(1.0)
    })
    .await;
    client.proc.kill9_and_wait().await;
    let killed = Instant::now();
    wait_metrics(&url, "0 subscribers", |m| {
        m.value("messenger_subscribers", &[]) == Some(0.0)
    })
    .await;
    let took = killed.elapsed();
    println!("client kill -9: server dropped its subscription in {took:?} (window 2 s)");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
