//! SIGTERM with a stream whose peer never reads: the server still exits at
//! the end of its grace period, the final trace export included, and the
//! messages that stream still held end their `fanout` spans before that
//! export. A stuck peer holds its connection for the whole grace period.

use crate::HEAVY;
use crate::dead_streams::{TEXT_BYTES, deaf_connection, open_unread, send_round};
use messenger_runtime::conn::ABANDON_BOUND;
use messenger_runtime::telemetry::FINAL_EXPORT_FLOOR;
use messenger_tests::otlp::{self, OtlpReceiver, summarize};
use messenger_tests::procs::spawn_server;
use messenger_tests::*;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// `MESSENGER_SHUTDOWN_GRACE_SECS` of these tests.
const GRACE_SECS: u64 = 2;
/// Messages sent while the unread stream holds them.
const HELD: usize = 16;

/// The grace period, the connections' abort and the final export's floor,
/// plus 500 ms for the process to start and end on a loaded machine.
fn exit_bound() -> Duration {
    Duration::from_secs(GRACE_SECS)
        + ABANDON_BOUND
        + FINAL_EXPORT_FLOOR
        + Duration::from_millis(500)
}

/// An OTLP endpoint that accepts connections and never answers.
async fn hung_collector() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_an_unread_stream_and_a_hung_collector_exits_by_the_grace_period() {
    let _heavy = HEAVY.lock().await;
    let (endpoint, collector) = hung_collector().await;
    let grace = GRACE_SECS.to_string();
    let server = spawn_server(&[
        ("MESSENGER_SHUTDOWN_GRACE_SECS", grace.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ])
    .await;
    let mut raw = deaf_connection(server.grpc_addr).await;
    let _stuck = open_unread(&mut raw).await;
    send_round(&server, HELD, &"x".repeat(TEXT_BYTES)).await;
    let started = Instant::now();
    let code = server.proc.sigterm_and_wait().await;
    let took = started.elapsed();
    collector.abort();
    assert_eq!(code, Some(0), "{}", server.proc.tail());
    assert!(
        took < exit_bound(),
        "exit {took:?} after SIGTERM with a hung collector, past {:?}\n{}",
        exit_bound(),
        server.proc.tail()
    );
    println!(
        "shutdown: an unread stream and a collector that never answers: exit 0 in {took:?} \
         (grace {GRACE_SECS} s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_an_unread_stream_held_at_shutdown_end_their_fanout_before_the_final_export() {
    let _heavy = HEAVY.lock().await;
    let otlp = OtlpReceiver::start().await;
    let grace = GRACE_SECS.to_string();
    let endpoint = otlp.endpoint();
    let server = spawn_server(&[
        ("MESSENGER_SHUTDOWN_GRACE_SECS", grace.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ])
    .await;
    let mut reader = server.subscribe().await;
    let mut raw = deaf_connection(server.grpc_addr).await;
    let _stuck = open_unread(&mut raw).await;
    send_round(&server, HELD, &"x".repeat(TEXT_BYTES)).await;
    for _ in 0..HELD {
        within("the reading subscriber's copy", reader.message())
            .await
            .expect("read")
            .expect("a message");
    }
    let started = Instant::now();
    let code = server.proc.sigterm_and_wait().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", server.proc.tail());
    assert!(took < exit_bound(), "exit {took:?}\n{}", server.proc.tail());
    // The exporter sent everything before the process exited.
    let spans = otlp.spans();
    let fanouts: Vec<_> = spans.iter().filter(|s| s.name == "fanout").collect();
    assert_eq!(
        fanouts.len(),
        HELD,
        "one `fanout` per message, each ended when the unread stream's copy was dropped\n{}",
        summarize(&spans)
    );
    for fanout in fanouts {
        // The reading subscriber got every message; the unread one at most
        // the chunk hyper took.
        match fanout.attr("messenger.delivered") {
            Some(otlp::Attr::Int(n)) if (1..=2).contains(n) => {}
            other => panic!("fanout messenger.delivered {other:?}: {}", fanout.summary()),
        }
    }
    println!(
        "shutdown: {HELD} messages held by an unread stream: {HELD} fanout spans exported, \
         exit 0 in {took:?} (grace {GRACE_SECS} s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_an_unread_stream_open_exits_when_the_grace_period_ends() {
    let _heavy = HEAVY.lock().await;
    let grace = GRACE_SECS.to_string();
    let server = spawn_server(&[("MESSENGER_SHUTDOWN_GRACE_SECS", grace.as_str())]).await;
    let mut raw = deaf_connection(server.grpc_addr).await;
    let _stuck = open_unread(&mut raw).await;
    // Something for the stream to hold that its peer never takes.
    send_round(&server, 64, &"x".repeat(TEXT_BYTES)).await;
    let started = std::time::Instant::now();
    let code = server.proc.sigterm_and_wait().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", server.proc.tail());
    // The drain's bound: the grace period, plus aborting what is left.
    let bound = std::time::Duration::from_secs(GRACE_SECS) + std::time::Duration::from_millis(500);
    assert!(
        took < bound,
        "exit {took:?} after SIGTERM, past the grace period of {GRACE_SECS} s\n{}",
        server.proc.tail()
    );
    println!(
        "dead streams: SIGTERM with an unread stream open: exit 0 in {took:?} (grace {GRACE_SECS} s)"
    );
}
