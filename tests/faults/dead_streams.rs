//! Streams cut off as slow whose peer never reads them (issue 26, item 4).
//!
//! A raw HTTP/2 client gives every `ReadMessages` stream a window of 0: its
//! connection task answers PINGs, it never reads, and hyper never polls a
//! response body with no window, so the server's stream stays open and
//! unpolled after the hub cut it off as slow (hyper polls it once and holds
//! the one chunk it got until the window opens). Such a stream must hold
//! none of its queue (RSS stays flat however many there are), and it must
//! count against `MESSENGER_MAX_SUBSCRIBERS` until it is gone.

use crate::{HEAVY, poll_until};
use bytes::Bytes;
use messenger_server::core::hub::BATCH_MAX;
use messenger_tests::procs::{ServerProc, rss_of, spawn_server};
use messenger_tests::prom::{scrape, wait_metrics};
use messenger_tests::raw::{Raw, frame};
use messenger_tests::*;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tonic::Code;

const READ_PATH: &str = "/mes_grpc.MessengerServer/ReadMessages";
/// The reproduction: more than a default queue (1,024) of 60 KiB
/// and what the stream holds outside it. A chunk ends once it passes
/// tonic's 32 KiB yield threshold, so hyper holds one such message; the
/// rest of the stream's first batch (`b` messages, at most `BATCH_MAX` =
/// 64, more than one when sends landed while it yielded to coalesce) stays
/// with the stream. Send `1,025 + b`, at most 1,089, overflows the queue.
const MESSAGES: usize = 1_100;
const _: () = assert!(MESSAGES > 1_024 + BATCH_MAX + 1);
pub(crate) const TEXT_BYTES: usize = 60 * 1024;
const DEAD_STREAMS: usize = 3;
/// `MESSENGER_SUBSCRIBER_QUEUE` of the subscriber-limit test.
const QUEUE_OF_4: usize = 4;
/// RSS growth allowed over the warmed-up baseline with [`DEAD_STREAMS`]
/// cut-off streams open. Each one held a whole queue before the fix: 1,024
/// messages of 120 KiB (text and encoding), +123 MiB per stream. After the
/// fix the three together measured +7 to +33 MiB on a loaded 2-core machine
/// (allocator and h2 buffers), so the bound is half of one pinned queue: any
/// single stream that still holds its queue exceeds it.
const GROWTH_BOUND: u64 = 60 * 1024 * 1024;
/// glibc serves every allocation from 32 KiB up (each text and encoding)
/// with its own mapping and unmaps it when freed, so the server's RSS is
/// what it holds, not what the allocator keeps for reuse.
const EXACT_RSS: (&str, &str) = ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=32768");

/// An HTTP/2 connection whose streams get a window of 0 and are never read.
pub(crate) async fn deaf_connection(addr: SocketAddr) -> Raw {
    let tcp = within("raw connect", TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    let handshake = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp);
    let (h2, conn) = within("h2 handshake", handshake)
        .await
        .expect("h2 handshake");
    // Drives the connection: answers PINGs and SETTINGS, reads nothing.
    tokio::spawn(conn);
    Raw::over(addr, h2)
}

/// Opens `ReadMessages` on `raw` and waits for its response headers (the
/// subscriber is registered); the caller holds the streams and never reads.
pub(crate) async fn open_unread(raw: &mut Raw) -> (h2::RecvStream, h2::SendStream<Bytes>) {
    let (response, mut send) = raw.open(READ_PATH, "application/grpc").await;
    send.send_data(Bytes::from(frame(false, 0, &[])), true)
        .expect("send the Empty request");
    let response = within("ReadMessages headers", response)
        .await
        .expect("ReadMessages response");
    assert_eq!(response.status(), 200);
    (response.into_body(), send)
}

pub(crate) async fn send_round(server: &ServerProc, n: usize, text: &str) {
    let mut grpc = server.grpc().await;
    for _ in 0..n {
        grpc_send(&mut grpc, "load", text).await.expect("send");
    }
}

/// Sends one small message at a time until the unread stream is cut off as
/// slow, and returns how many it took. hyper holds the first chunk of the
/// stream (the messages the stream wrote before it first went pending:
/// one, or more when sends landed while it yielded to coalesce, at most a
/// full batch, `BATCH_MAX` = 64), then `queue` fill its queue, and the next
/// send overflows it. Fails past that bound (a stream never cut off) and
/// before `queue + 2` (a stream cut off with room left in its queue).
async fn send_until_cut_off(server: &ServerProc, queue: usize) -> usize {
    let mut grpc = server.grpc().await;
    for sent in 1..=BATCH_MAX + queue + 1 {
        within("a send", grpc_send(&mut grpc, "load", "small"))
            .await
            .expect("send");
        // The send that overflowed the queue cut the stream off before it returned.
        if slow_disconnects(server).await == 1.0 {
            assert!(
                sent >= queue + 2,
                "cut off at send {sent}, with room left in a queue of {queue}"
            );
            return sent;
        }
    }
    panic!("an unread stream with a queue of {queue} was never cut off as slow");
}

async fn slow_disconnects(server: &ServerProc) -> f64 {
    scrape(&server.metrics_url()).await.sum(
        "messenger_subscriber_disconnects_total",
        &[("reason", "slow")],
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_off_as_slow_frees_its_queue_while_its_connection_stays_open() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[EXACT_RSS]).await;
    let pid = server.proc.pid();
    let text = "x".repeat(TEXT_BYTES);
    // Warm up: history full (64 MiB by default), allocator and buffers in use.
    send_round(&server, MESSAGES, &text).await;
    let baseline = rss_of(pid).expect("server RSS");
    let mut raw = deaf_connection(server.grpc_addr).await;
    let mut held = Vec::new();
    let mut growth = Vec::new();
    for i in 1..=DEAD_STREAMS {
        held.push(open_unread(&mut raw).await);
        send_round(&server, MESSAGES, &text).await;
        // The send that overflowed the queue cut the stream off before it returned.
        assert_eq!(
            slow_disconnects(&server).await,
            i as f64,
            "stream {i} cut off"
        );
        growth.push(rss_of(pid).expect("server RSS").saturating_sub(baseline));
    }
    let shown: Vec<String> = growth.iter().map(|g| format!("+{:.0}", mib(*g))).collect();
    println!(
        "dead streams: {MESSAGES} x {} KiB per stream, {DEAD_STREAMS} streams cut off as slow on \
         one open connection, server RSS over a {:.0} MiB baseline: {} MiB (bound +{:.0} MiB)",
        TEXT_BYTES / 1024,
        mib(baseline),
        shown.join(", "),
        mib(GROWTH_BOUND)
    );
    for (i, g) in growth.iter().enumerate() {
        assert!(
            *g < GROWTH_BOUND,
            "with {} cut-off streams open: RSS +{:.0} MiB; they still hold their queues",
            i + 1,
            mib(*g)
        );
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_off_as_slow_counts_against_the_subscriber_limit_until_it_is_gone() {
    let _heavy = HEAVY.lock().await;
    let queue = QUEUE_OF_4.to_string();
    let server = spawn_server(&[
        ("MESSENGER_MAX_SUBSCRIBERS", "1"),
        ("MESSENGER_SUBSCRIBER_QUEUE", &queue),
    ])
    .await;
    let mut raw = deaf_connection(server.grpc_addr).await;
    let stuck = open_unread(&mut raw).await;
    let sends = send_until_cut_off(&server, QUEUE_OF_4).await;
    let mut grpc = server.grpc().await;
    let refused = within("ReadMessages refused", grpc.read_messages(()))
        .await
        .expect_err("the open, cut-off stream still counts against the limit of 1");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("MESSENGER_MAX_SUBSCRIBERS"),
        "{refused:?}"
    );
    // An open stream, in the gauge as in the limit (it read 0 here).
    let m = scrape(&server.metrics_url()).await;
    assert_eq!(m.value("messenger_subscribers", &[]), Some(1.0));
    // The peer resets the stream: hyper drops the response, and the room is back.
    drop(stuck);
    let (_stream, took) = poll_until("a subscriber is admitted again", WAIT, || {
        let mut grpc = grpc.clone();
        async move { grpc.read_messages(()).await.ok() }
    })
    .await;
    // The cut stream ended as the hub ended it, counted once: slow, with
    // its RESOURCE_EXHAUSTED; not a second time as cancelled.
    let read = |code| [("grpc_method", "ReadMessages"), ("grpc_code", code)];
    let m = wait_metrics(&server.metrics_url(), "the cut stream handled", |m| {
        m.sum(
            "grpc_server_handled_total",
            &[("grpc_method", "ReadMessages")],
        ) >= 1.0
    })
    .await;
    let reason = |r| m.sum("messenger_subscriber_disconnects_total", &[("reason", r)]);
    assert_eq!((reason("slow"), reason("cancelled")), (1.0, 0.0));
    assert_eq!(
        m.sum("grpc_server_handled_total", &read("Canceled")),
        0.0,
        "handled with the hub's RESOURCE_EXHAUSTED"
    );
    assert_eq!(
        m.value("messenger_subscribers", &[]),
        Some(1.0),
        "the new one"
    );
    println!(
        "dead streams: with MESSENGER_MAX_SUBSCRIBERS=1 an open stream cut off as slow (at send \
         {sends} into a queue of {QUEUE_OF_4}) refused the next subscriber (RESOURCE_EXHAUSTED); \
         admitted {took:?} after the peer reset it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_held_for_an_unread_stream_is_counted_as_delivered() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let mut raw = deaf_connection(server.grpc_addr).await;
    let _stuck = open_unread(&mut raw).await;
    // Each message ends a chunk (60 KiB is past tonic's 32 KiB), and hyper
    // never polls the stream again after the first.
    send_round(&server, 3, &"x".repeat(TEXT_BYTES)).await;
    let url = server.metrics_url();
    let deadline = std::time::Instant::now() + WAIT;
    let counts = loop {
        let m = scrape(&url).await;
        let counts = (
            m.sum("messenger_delivery_latency_seconds_count", &[]),
            m.sum("messenger_messages_delivered_total", &[]),
            m.sum(
                "grpc_server_msg_sent_total",
                &[("grpc_method", "ReadMessages")],
            ),
        );
        if counts.0 >= 1.0 && counts.1 == counts.0 && counts.2 == counts.0 {
            break counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "latency samples, delivered, sent: {counts:?}: the held chunk must be counted by all three"
        );
        // Metrics have no change notification: poll, bounded by WAIT.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    println!(
        "dead streams: the chunk hyper holds for an unread stream: {} latency samples, {} delivered, {} sent",
        counts.0, counts.1, counts.2
    );
}
