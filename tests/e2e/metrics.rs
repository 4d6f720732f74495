//! Prometheus metrics of the real binaries, scraped over HTTP: every name is
//! registered with HELP before any traffic, histograms use our own buckets,
//! the counters agree exactly with the traffic sent, the client's buffer
//! gauge equals what a flush returns, and a slow subscriber is counted.

use messenger_tests::procs::{ClientProc, spawn_client, spawn_server};
use messenger_tests::prom::{Metrics, scrape, wait_metrics};
use messenger_tests::{connect, grpc_send, read_n, subscribe_stalled, within};
use std::time::Duration;
use tonic::Code;

/// HTTP/2's default stream window (RFC 9113 §6.9.2); tonic's client asks for
/// 2 MiB unless told.
const WINDOW: u32 = 65_535;

const SERVER_METRICS: [(&str, &str); 15] = [
    ("grpc_server_started_total", "counter"),
    ("grpc_server_handled_total", "counter"),
    ("grpc_server_msg_sent_total", "counter"),
    ("grpc_server_msg_received_total", "counter"),
    ("grpc_server_handling_seconds", "histogram"),
    ("messenger_messages_accepted_total", "counter"),
    ("messenger_subscribers", "gauge"),
    ("messenger_fanout_duration_seconds", "histogram"),
    ("messenger_delivery_latency_seconds", "histogram"),
    ("messenger_messages_delivered_total", "counter"),
    ("messenger_subscriber_disconnects_total", "counter"),
    ("messenger_history_messages", "gauge"),
    ("messenger_history_bytes", "gauge"),
    ("messenger_resumes_total", "counter"),
    ("messenger_replayed_messages_total", "counter"),
];

const PROCESS_METRICS: [&str; 4] = [
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_cpu_seconds_total",
    "process_threads",
];

const CLIENT_METRICS: [(&str, &str); 17] = [
    ("http_server_requests_total", "counter"),
    ("http_server_request_duration_seconds", "histogram"),
    ("grpc_client_handled_total", "counter"),
    ("grpc_client_handling_seconds", "histogram"),
    ("messenger_client_buffered_messages", "gauge"),
    ("messenger_client_received_total", "counter"),
    ("messenger_client_dropped_total", "counter"),
    ("messenger_client_end_to_end_latency_seconds", "histogram"),
    ("messenger_client_stream_connected", "gauge"),
    ("messenger_client_stream_reconnects_total", "counter"),
    ("messenger_client_resumes_total", "counter"),
    ("messenger_client_recovered_messages_total", "counter"),
    ("messenger_client_event_streams", "gauge"),
    ("messenger_client_events_sent_total", "counter"),
    ("messenger_client_event_resumes_total", "counter"),
    ("messenger_client_event_gaps_total", "counter"),
    ("messenger_client_event_streams_cut_total", "counter"),
];

/// The Prometheus exporter's defaults, which a latency histogram here must not use.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_is_registered_with_help_before_any_traffic() {
    let server = spawn_server(&[]).await;
    let fresh = scrape(&server.metrics_url()).await;
    assert_registered(&fresh, &SERVER_METRICS, "server");
    for name in PROCESS_METRICS {
        assert!(fresh.has_metric(name), "server lacks {name}");
    }
    for reason in ["slow", "cancelled", "shutdown", "error"] {
        let labels = [("reason", reason)];
        let value = fresh.value("messenger_subscriber_disconnects_total", &labels);
        assert_eq!(value, Some(0.0), "disconnects{{reason={reason}}} at start");
    }
    assert_eq!(fresh.value("messenger_subscribers", &[]), Some(0.0));
    for result in ["recovered", "gap"] {
        let labels = [("result", result)];
        assert_eq!(fresh.value("messenger_resumes_total", &labels), Some(0.0));
    }
    assert_eq!(fresh.value("messenger_history_messages", &[]), Some(0.0));
    let delivery = fresh.bucket_bounds("messenger_delivery_latency_seconds");
    assert!(delivery.iter().any(|le| *le < 0.0001), "{delivery:?}");
    let fanout = fresh.bucket_bounds("messenger_fanout_duration_seconds");
    assert!(fanout.iter().any(|le| *le <= 0.00001), "{fanout:?}");

    let client = spawn_client(server.grpc_addr, &[]).await;
    let fresh = scrape(&client.metrics_url()).await;
    assert_registered(&fresh, &CLIENT_METRICS, "client");
    assert_eq!(
        fresh.value("messenger_client_stream_connected", &[]),
        Some(1.0)
    );
    assert_eq!(
        fresh.value("messenger_client_buffered_messages", &[]),
        Some(0.0)
    );
}

/// Each name has HELP text, its TYPE, at least one sample, and a histogram
/// has buckets of its own.
fn assert_registered(metrics: &Metrics, names: &[(&str, &str)], who: &str) {
    for (name, kind) in names {
        let help = metrics.help.get(*name).map(String::as_str);
        assert!(
            help.is_some_and(|h| !h.is_empty()),
            "{who}: {name} has no HELP"
        );
        let actual = metrics.types.get(*name).map(String::as_str);
        assert_eq!(actual, Some(*kind), "{who}: TYPE of {name}");
        assert!(metrics.has_metric(name), "{who}: {name} has no sample");
        if *kind == "histogram" {
            let mut finite = metrics.bucket_bounds(name);
            finite.retain(|le| le.is_finite());
            assert!(!finite.is_empty(), "{who}: {name} has no buckets");
            assert_ne!(
                finite, DEFAULT_BUCKETS,
                "{who}: {name} uses default buckets"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_and_gauges_match_the_traffic() {
    const N: usize = 50;
    const M: usize = 7;
    let server = spawn_server(&[]).await;
    let clients = [
        spawn_client(server.grpc_addr, &[]).await,
        spawn_client(server.grpc_addr, &[]).await,
    ];
    let mut raw = server.subscribe().await;
    for i in 0..N {
        clients[i % 2].send("metrics", &format!("{i}")).await;
    }
    for client in &clients {
        client.collect(N).await;
    }
    read_n(&mut raw, N).await;

    let delivered = (N * 3) as f64;
    let s = wait_metrics(&server.metrics_url(), "all deliveries counted", |m| {
        m.sum("messenger_messages_delivered_total", &[]) >= delivered
    })
    .await;
    assert_eq!(s.sum("messenger_messages_accepted_total", &[]), N as f64);
    assert_eq!(s.sum("messenger_messages_delivered_total", &[]), delivered);
    assert_eq!(
        s.sum("messenger_delivery_latency_seconds_count", &[]),
        delivered
    );
    assert_eq!(s.value("messenger_subscribers", &[]), Some(3.0));
    let ok_sends = [("grpc_method", "SendMessage"), ("grpc_code", "OK")];
    assert_eq!(s.sum("grpc_server_handled_total", &ok_sends), N as f64);

    let sent_via_client1 = N.div_ceil(2) as f64;
    let c = scrape(&clients[0].metrics_url()).await;
    let ok_route = [("route", "/sendMessage"), ("status", "200")];
    assert_eq!(
        c.sum("http_server_requests_total", &ok_route),
        sent_via_client1
    );
    for client in &clients {
        let c = scrape(&client.metrics_url()).await;
        assert_eq!(
            c.value("messenger_client_received_total", &[]),
            Some(N as f64)
        );
        assert_eq!(c.value("messenger_client_stream_connected", &[]), Some(1.0));
        assert_eq!(
            c.value("messenger_client_buffered_messages", &[]),
            Some(0.0)
        );
    }

    for i in 0..M {
        clients[0].send("more", &format!("{i}")).await;
    }
    for client in &clients {
        assert_buffered_gauge_equals_flush(client, N + M, M).await;
    }
    read_n(&mut raw, M).await;
}

/// Once `received` messages have arrived, the gauge says `buffered` and a
/// flush returns exactly that many. The client counts a message received
/// just before it buffers it, so one scrape may see the count without the
/// gauge: the wait is for both.
async fn assert_buffered_gauge_equals_flush(client: &ClientProc, received: usize, buffered: usize) {
    let url = client.metrics_url();
    let what = format!("received_total reaches {received}, the gauge {buffered}");
    wait_metrics(&url, &what, |m| {
        m.value("messenger_client_received_total", &[]) >= Some(received as f64)
            && m.value("messenger_client_buffered_messages", &[]) == Some(buffered as f64)
    })
    .await;
    assert_eq!(
        client.flush().await.len(),
        buffered,
        "{}",
        client.proc.name()
    );
    let after = scrape(&url).await;
    let gauge = after.value("messenger_client_buffered_messages", &[]);
    assert_eq!(gauge, Some(0.0), "after a flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_is_counted_as_a_slow_disconnect() {
    const QUEUE: usize = 4;
    let queue = QUEUE.to_string();
    let server = spawn_server(&[("MESSENGER_SUBSCRIBER_QUEUE", &queue)]).await;
    // Never read, with HTTP/2's default window of 65,535 bytes: the server
    // writes 4 messages of 16 KiB (just over the window), then never again.
    let stalled = subscribe_stalled(server.grpc_addr, WINDOW).await;
    let mut sender = server.grpc().await;
    let text = "x".repeat(16 * 1024);
    let in_window = WINDOW as usize / text.len() + 1;
    for i in 0..in_window {
        grpc_send(&mut sender, &format!("{i}"), &text)
            .await
            .unwrap();
    }
    // The window is full once the stream has taken them: from then on the
    // server's HTTP/2 layer never asks the stream for more, so the cut
    // below can only be seen by the hub, however the tasks are scheduled
    // (with the window left open the stream could still end itself).
    wait_metrics(&server.metrics_url(), "the window filled", |m| {
        m.sum("messenger_messages_delivered_total", &[]) >= in_window as f64
    })
    .await;
    // Until its queue (and the batch its stream holds) overflows: cut off
    // as slow.
    let slow = [("reason", "slow")];
    let mut queued = 0;
    loop {
        grpc_send(&mut sender, &format!("queued {queued}"), &text)
            .await
            .unwrap();
        queued += 1;
        let m = scrape(&server.metrics_url()).await;
        if m.sum("messenger_subscriber_disconnects_total", &slow) >= 1.0 {
            break;
        }
        assert!(
            queued < 16 * QUEUE,
            "no slow disconnect after {queued} more messages"
        );
    }
    // Cut off, but its stream is open until the peer closes it: still in
    // the gauge (as in the subscriber limit), then out of it.
    let m = scrape(&server.metrics_url()).await;
    assert_eq!(m.value("messenger_subscribers", &[]), Some(1.0));
    drop(stalled);
    let m = wait_metrics(
        &server.metrics_url(),
        "the subscriber gauge back at 0",
        |m| m.value("messenger_subscribers", &[]) == Some(0.0),
    )
    .await;
    let cancelled = [("reason", "cancelled")];
    assert_eq!(
        m.sum("messenger_subscriber_disconnects_total", &cancelled),
        0.0,
        "counted once, as slow"
    );
}

/// A `ReadMessages` stream ended by the caller's `grpc-timeout` was counted
/// as `Canceled` in `grpc_server_handled_total`, though the caller got
/// DEADLINE_EXCEEDED (`grpcurl -max-time` does this to every stream it reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_ended_by_its_deadline_is_counted_deadline_exceeded_not_canceled() {
    let server = spawn_server(&[]).await;
    let mut client = connect(server.grpc_addr).await;
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_millis(300));
    let mut stream = within("ReadMessages headers", client.read_messages(request))
        .await
        .expect("subscribed")
        .into_inner();
    let end = within("the deadline", stream.message()).await;
    assert_eq!(
        end.expect_err("ends with a status").code(),
        Code::DeadlineExceeded
    );
    // A stream the caller drops before any deadline is still Canceled.
    let cancelled = within(
        "ReadMessages headers",
        client.read_messages(tonic::Request::new(())),
    )
    .await
    .expect("subscribed");
    drop(cancelled);
    let read = |code| [("grpc_method", "ReadMessages"), ("grpc_code", code)];
    let s = wait_metrics(&server.metrics_url(), "both streams counted", |m| {
        m.sum("grpc_server_handled_total", &read("DeadlineExceeded")) >= 1.0
            && m.sum("grpc_server_handled_total", &read("Canceled")) >= 1.0
    })
    .await;
    assert_eq!(
        s.sum("grpc_server_handled_total", &read("DeadlineExceeded")),
        1.0
    );
    assert_eq!(s.sum("grpc_server_handled_total", &read("Canceled")), 1.0);
}
