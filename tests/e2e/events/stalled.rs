//! Readers that open an `/events` replay and never read it (a field report:
//! about 24 MiB held per stalled stream, 100 of them 1.5 GiB). A stalled
//! stream holds a bounded queue (in bytes, replay as well as live) and a small
//! HTTP/2 window of the client's connection to the server, never the other
//! streams' share of it; it is cut once it took nothing for the stall bound,
//! which frees its queue even while its reader stays connected, and its
//! reconnect resumes after its `Last-Event-ID`.

use super::sse::split_id;
use super::{open, stack};
use messenger_tests::procs::rss_of;
use messenger_tests::prom::scrape;
use messenger_tests::{WAIT, poll_until, within};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// More than a queue of events (1,024), so a replay never fits one.
const MESSAGES: usize = 1_100;
/// 22 MB of history, all of it replayed to each stalled stream.
const TEXT_BYTES: usize = 20 * 1024;
const STALLED: usize = 12;
/// RSS growth allowed with [`STALLED`] streams stalled. Before the fix each
/// held its queue of 1,024 messages and a 2 MiB window: over 20 MiB each,
/// 250 MiB for twelve. After it, a 1 MiB queue, a 256 KiB window and
/// hyper's write buffer: under 2 MiB each.
const GROWTH_BOUND: u64 = 64 * 1024 * 1024;
/// RSS growth allowed once the stalled streams are cut while their readers
/// stay connected and never read: hyper's write buffer of each response
/// (at most 16 events here, 320 KiB), no queue. Before the queue was
/// emptied at the cut it stayed, a 1 MiB queue more per stream.
const AFTER_CUT_BOUND: u64 = STALLED as u64 * 768 * 1024;
/// Every text has a mapping of its own, unmapped when freed, so RSS is what
/// the client holds, not what the allocator keeps for reuse.
const EXACT_RSS: (&str, &str) = ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=16384");
const CUT: &str = "messenger_client_event_streams_cut_total";

/// `GET /events<query>` on a socket with a tiny receive buffer; reads the
/// status line only, then never reads again.
async fn stalled_reader(addr: SocketAddr, query: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = within("connect", socket.connect(addr))
        .await
        .expect("connect");
    let request = format!("GET /events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut status = [0u8; 12];
    within("the status line", tcp.read_exact(&mut status))
        .await
        .expect("read");
    assert_eq!(
        &status,
        b"HTTP/1.1 200",
        "{:?}",
        String::from_utf8_lossy(&status)
    );
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replays_hold_a_bounded_amount_and_are_cut() {
    let (server, client) = stack(&[EXACT_RSS]).await;
    let (first, ready) = open(&client, "", &[]).await;
    drop(first);
    let epoch = ready["epoch"].as_str().unwrap().to_owned();
    let since = format!("?since={epoch}:0");
    let mut grpc = server.grpc().await;
    let filler = "x".repeat(TEXT_BYTES);
    for i in 1..=MESSAGES {
        messenger_tests::grpc_send(&mut grpc, "s", &format!("{i} {filler}"))
            .await
            .unwrap();
    }
    // A replay read to its end: nothing lost, and the client is warm.
    let (mut whole, _) = open(&client, &since, &[]).await;
    for i in 1..=MESSAGES {
        let (_, json) = whole.message().await;
        assert!(json["text"].as_str().unwrap().starts_with(&format!("{i} ")));
    }
    drop(whole);
    let pid = client.proc.pid();
    let before = rss_of(pid).expect("client RSS");

    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stalled_reader(client.http_addr, &since).await);
    }
    // A reader that keeps up is served while the others stall.
    let (mut healthy, _) = open(&client, "", &[]).await;
    client.send("live", "past the stalled ones").await;
    let (id, json) = healthy.message().await;
    assert_eq!(json["text"], "past the stalled ones");
    let started = Instant::now();
    let mut peak = 0;
    loop {
        let growth = rss_of(pid).expect("client RSS").saturating_sub(before);
        peak = peak.max(growth);
        assert!(
            growth < GROWTH_BOUND,
            "{STALLED} stalled replays hold {growth} bytes ({} MiB) after {:?}",
            growth >> 20,
            started.elapsed()
        );
        let cut = scrape(&client.metrics_url()).await.value(CUT, &[]);
        if cut == Some(STALLED as f64) {
            break;
        }
        assert!(
            started.elapsed() < WAIT * 3,
            "stalled streams not cut after {:?}: {cut:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // a sampling period, not a readiness wait
    }
    println!(
        "{STALLED} stalled /events replays of {MESSAGES} x {TEXT_BYTES} B: client RSS peak +{peak} bytes \
         ({} KiB per stream), all cut after {:?}",
        (peak / STALLED as u64) >> 10,
        started.elapsed()
    );
    // Cut, still connected, never read again: the response is never polled,
    // so the reader alone frees the queue.
    let (held, _) = poll_until("the cut streams' queues freed", WAIT, || async {
        let growth = rss_of(pid).expect("client RSS").saturating_sub(before);
        (growth < AFTER_CUT_BOUND).then_some(growth)
    })
    .await;
    println!("cut and still connected: RSS +{held} bytes");
    drop(stalled);
    // The healthy reader was never cut and still delivers.
    client.send("live", "after the cut").await;
    let (next, json) = healthy.message().await;
    assert_eq!(json["text"], "after the cut");
    assert_eq!(split_id(&next).1, split_id(&id).1 + 1);
}
