//! Connection hygiene on every port of both binaries: a connection that never
//! starts a request, or sits idle, is closed within its bound; an attack that
//! holds connections open does not starve real calls; and SIGTERM does not
//! wait for connections with nothing in flight. Raw TCP, as the attacker has it.

use crate::HEAVY;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_runtime::conn::{CLOSED_TOTAL, ENV_HANDSHAKE_TIMEOUT_MS, ENV_IDLE_TIMEOUT_MS};
use messenger_tests::procs::{
    ClientProc, ServerProc, spawn_client, spawn_client_with_nofile, spawn_server,
    spawn_server_with_nofile,
};
use messenger_tests::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The bound the tests configure, instead of the 10 s / 60 s defaults.
const BOUND: Duration = Duration::from_millis(300);
const BOUND_MS: &str = "300";
/// How much later than the bound a close may come on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// What a hostile or lazy peer sends before it stops.
fn h2_openings() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a TCP connection that sends nothing", Vec::new()),
        ("half an HTTP/2 preface", b"PRI * HTTP/2.0\r\n".to_vec()),
        (
            "the preface and SETTINGS, then nothing (no PING answered)",
            [PREFACE, &EMPTY_SETTINGS].concat(),
        ),
    ]
}

fn h1_openings() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a TCP connection that sends nothing", Vec::new()),
        ("half a request head", b"GET / HTTP/1.1\r\n".to_vec()),
    ]
}

async fn open(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    tcp
}

/// Reads (and discards) until the server closes; returns how long that took.
async fn wait_eof(what: &str, tcp: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {limit:?}");
    start.elapsed()
}

/// Sends a whole `GET path` with keep-alive and reads the whole response.
async fn get_keep_alive(tcp: &mut TcpStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    within("keep-alive response", async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before the response ended");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                if got.len() >= end + 4 + length {
                    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                    return;
                }
            }
        }
    })
    .await;
}

/// `messenger_connections_closed_total{listener, reason}` at `url`.
async fn closed(url: &str, listener: &str, reason: &str) -> f64 {
    messenger_tests::prom::scrape(url)
        .await
        .value(CLOSED_TOTAL, &[("listener", listener), ("reason", reason)])
        .unwrap_or_else(|| panic!("{CLOSED_TOTAL}{{{listener},{reason}}} is registered"))
}

async fn check_closed(what: &str, addr: SocketAddr, openings: Vec<(&'static str, Vec<u8>)>) {
    for (case, bytes) in openings {
        let mut tcp = open(addr, &bytes).await;
        let took = wait_eof(case, &mut tcp, BOUND + SLACK).await;
        println!("{what}, {case}: closed after {took:?} (bound {BOUND:?})");
        assert!(
            took >= BOUND - Duration::from_millis(50),
            "{case}: {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_closes_connections_that_never_start_a_request() {
    let _heavy = HEAVY.lock().await;
    let env = [(ENV_HANDSHAKE_TIMEOUT_MS, BOUND_MS)];
    let server = spawn_server(&env).await;
    let client = spawn_client(server.grpc_addr, &env).await;
    check_closed("gRPC", server.grpc_addr, h2_openings()).await;
    check_closed("server /metrics", server.metrics_addr, h1_openings()).await;
    check_closed("client HTTP", client.http_addr, h1_openings()).await;
    let metrics = server.metrics_url();
    assert_eq!(closed(&metrics, "grpc", "handshake_timeout").await, 3.0);
    assert_eq!(closed(&metrics, "metrics", "handshake_timeout").await, 2.0);
    let http = client.metrics_url();
    assert_eq!(closed(&http, "http", "handshake_timeout").await, 2.0);
    // The ports still serve.
    grpc_send(&mut server.grpc().await, "after", "probes")
        .await
        .unwrap();
    client.send("after", "probes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_within_the_bound() {
    let _heavy = HEAVY.lock().await;
    let pki = messenger_tests::certs::TestPki::generate();
    let (cert, key) = (
        pki.server_cert.to_str().unwrap(),
        pki.server_key.to_str().unwrap(),
    );
    let env = [
        (ENV_HANDSHAKE_TIMEOUT_MS, BOUND_MS),
        ("MESSENGER_TLS_CERT", cert),
        ("MESSENGER_TLS_KEY", key),
    ];
    let server = spawn_server(&env).await;
    // A real TLS subscriber, whose connection must outlive the bound.
    let files = messenger_runtime::tls::ClientTlsFiles {
        ca: Some(pki.ca.clone()),
        ..Default::default()
    };
    let channel = tls_channel(server.grpc_addr, &files).await.unwrap();
    let mut stream = MessengerServerClient::new(channel)
        .read_messages(())
        .await
        .unwrap()
        .into_inner();
    // A ClientHello record header that promises more than it sends.
    let partial_hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let openings = vec![
        ("a TCP connection that sends nothing", Vec::new()),
        ("a partial ClientHello", partial_hello),
    ];
    check_closed("gRPC over TLS", server.grpc_addr, openings).await;
    // Both stalled handshakes took longer than the bound; the subscriber is still served.
    let channel = tls_channel(server.grpc_addr, &files).await.unwrap();
    let sent = grpc_send(
        &mut MessengerServerClient::new(channel),
        "tls",
        "still here",
    )
    .await
    .unwrap();
    let got = within("TLS stream", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Msg::from(got).send_time, sent);
    assert_eq!(
        closed(&server.metrics_url(), "grpc", "handshake_timeout").await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_closes_idle_connections() {
    let _heavy = HEAVY.lock().await;
    let env = [(ENV_IDLE_TIMEOUT_MS, BOUND_MS)];
    let server = spawn_server(&env).await;
    let client = spawn_client(server.grpc_addr, &env).await;
    // HTTP/1 keep-alive after one whole request.
    for (what, addr, path) in [
        ("server /metrics", server.metrics_addr, "/metrics"),
        ("client HTTP", client.http_addr, "/healthz"),
    ] {
        let mut tcp = open(addr, &[]).await;
        get_keep_alive(&mut tcp, path).await;
        let took = wait_eof(what, &mut tcp, BOUND + SLACK).await;
        println!("{what}: idle keep-alive closed after {took:?} (bound {BOUND:?})");
    }
    // HTTP/2 with no stream left after one call.
    let tcp = within("connect", TcpStream::connect(server.grpc_addr))
        .await
        .unwrap();
    let (h2, connection) = within("h2 handshake", h2::client::handshake(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut raw = messenger_tests::raw::Raw::over(server.grpc_addr, h2);
    let valid = messenger_tests::raw::encoded_request(b"idle soon");
    let body = messenger_tests::raw::frame(false, valid.len() as u32, &valid);
    let (code, message) = raw
        .call(messenger_tests::raw::SEND_PATH, "application/grpc", body)
        .await;
    assert_eq!(code, 0, "{message}");
    let start = Instant::now();
    let ended = tokio::time::timeout(BOUND + SLACK, connection).await;
    assert!(
        ended.is_ok(),
        "HTTP/2 connection without streams still open"
    );
    println!(
        "gRPC: HTTP/2 connection without streams closed after {:?} (bound {BOUND:?})",
        start.elapsed()
    );
    assert_eq!(
        closed(&server.metrics_url(), "grpc", "idle_timeout").await,
        1.0
    );
    // The scrape above may have ridden an idle connection too; at least ours counts.
    assert!(closed(&server.metrics_url(), "metrics", "idle_timeout").await >= 1.0);
    assert!(closed(&client.metrics_url(), "http", "idle_timeout").await >= 1.0);
}

/// Attackers on `addr` that open a connection, send nothing, wait for the
/// server to close it, and start over, until `stop`. `cycles` counts closes.
fn attack(
    addr: SocketAddr,
    n: usize,
    cycles: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (cycles, mut stop) = (Arc::clone(&cycles), stop.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let Ok(mut tcp) = TcpStream::connect(addr).await else {
                        continue;
                    };
                    let mut buf = [0u8; 1024];
                    tokio::select! {
                        _ = async { while !matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {} } => {
                            cycles.fetch_add(1, Ordering::Relaxed);
                        }
                        _ = stop.changed() => return,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holding_connections_open_does_not_starve_real_calls() {
    let _heavy = HEAVY.lock().await;
    // The field report: open-files limit 128, 140 attacking connections.
    const NOFILE: u64 = 128;
    const ATTACKERS: usize = 140;
    let env = [(ENV_HANDSHAKE_TIMEOUT_MS, BOUND_MS)];
    let server: ServerProc = spawn_server_with_nofile(&env, Some(NOFILE)).await;
    let client: ClientProc = spawn_client_with_nofile(server.grpc_addr, &env, Some(NOFILE)).await;
    let (stop_tx, stop) = watch::channel(false);
    let on_server = Arc::new(AtomicUsize::new(0));
    let on_client = Arc::new(AtomicUsize::new(0));
    let mut attackers = attack(
        server.grpc_addr,
        ATTACKERS,
        Arc::clone(&on_server),
        stop.clone(),
    );
    attackers.extend(attack(
        client.http_addr,
        ATTACKERS,
        Arc::clone(&on_client),
        stop,
    ));
    // The attack is in full swing once every attacker has been cut off once.
    within("every attacker closed once", async {
        while on_server.load(Ordering::Relaxed) < ATTACKERS
            || on_client.load(Ordering::Relaxed) < ATTACKERS
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let start = Instant::now();
    let mut grpc = within("gRPC connect under attack", server.grpc()).await;
    let mut request = tonic::Request::new(messenger_proto::pb::SendMessageRequest {
        author: "real".into(),
        text: "during the attack".into(),
    });
    request.set_timeout(Duration::from_secs(5));
    let sent = grpc.send_message(request).await;
    let grpc_took = start.elapsed();
    assert!(sent.is_ok(), "SendMessage under attack: {sent:?}");
    let start = Instant::now();
    client
        .send("real", "through the client during the attack")
        .await;
    let http_took = start.elapsed();
    stop_tx.send_replace(true);
    for a in attackers {
        let _ = within("attacker stops", a).await;
    }
    println!(
        "{ATTACKERS} attackers per port at open-files limit {NOFILE}: SendMessage answered in \
         {grpc_took:?}, /sendMessage in {http_took:?}; attacks cut off: {} on the server, {} on \
         the client",
        on_server.load(Ordering::Relaxed),
        on_client.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigterm_does_not_wait_for_idle_or_unfinished_connections() {
    let _heavy = HEAVY.lock().await;
    let grace = Duration::from_secs(10);
    let server = spawn_server(&[("MESSENGER_SHUTDOWN_GRACE_SECS", "10")]).await;
    let mut held = Vec::new();
    for (case, bytes) in h2_openings() {
        let mut tcp = open(server.grpc_addr, &bytes).await;
        // The server's SETTINGS frame: the connection was accepted.
        let mut settings = [0u8; 9];
        within(case, tcp.read_exact(&mut settings)).await.unwrap();
        held.push((case, tcp));
    }
    // An established HTTP/2 connection, idle after one call.
    let mut raw = messenger_tests::raw::Raw::connect(server.grpc_addr).await;
    let valid = messenger_tests::raw::encoded_request(b"then idle");
    let body = messenger_tests::raw::frame(false, valid.len() as u32, &valid);
    let (code, _) = raw
        .call(messenger_tests::raw::SEND_PATH, "application/grpc", body)
        .await;
    assert_eq!(code, 0);
    let start = Instant::now();
    let code = server.proc.sigterm_and_wait().await;
    let took = start.elapsed();
    assert_eq!(code, Some(0), "{}", server.proc.tail());
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} (grace {grace:?})"
    );
    for (case, mut tcp) in held {
        wait_eof(case, &mut tcp, WAIT).await;
    }
    println!(
        "server SIGTERM with 3 unfinished and 1 idle connection: exit 0 in {took:?} (grace {grace:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sigterm_does_not_wait_for_idle_or_half_sent_requests() {
    let _heavy = HEAVY.lock().await;
    let grace = Duration::from_secs(10);
    let server = spawn_server(&[]).await;
    let client = spawn_client(server.grpc_addr, &[("MESSENGER_SHUTDOWN_GRACE_SECS", "10")]).await;
    let mut held = Vec::new();
    for (case, bytes) in h1_openings() {
        held.push((case, open(client.http_addr, &bytes).await));
    }
    let mut idle = open(client.http_addr, &[]).await;
    // Served after the ones above were accepted: one accept loop, in order.
    get_keep_alive(&mut idle, "/healthz").await;
    held.push(("an idle keep-alive connection", idle));
    let mut second = open(client.http_addr, &[]).await;
    get_keep_alive(&mut second, "/healthz").await;
    second
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    held.push(("keep-alive, then half a second request head", second));
    let start = Instant::now();
    let code = client.proc.sigterm_and_wait().await;
    let took = start.elapsed();
    assert_eq!(code, Some(0), "{}", client.proc.tail());
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} (grace {grace:?})"
    );
    for (case, mut tcp) in held {
        wait_eof(case, &mut tcp, WAIT).await;
    }
    println!(
        "client SIGTERM with 4 idle or unfinished connections: exit 0 in {took:?} (grace {grace:?})"
    );
}
