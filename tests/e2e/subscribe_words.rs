//! What a client that cannot subscribe says, as a newcomer meets it
//! (issue 26, item 8), against the real binary: the failure is logged again
//! periodically with its reason (it used to be one WARN, then silence), and a
//! peer that is not a gRPC server is named as such (it used to be
//! `h2 protocol error: http2 error`, again and again).

use messenger_tests::procs::{Line, Proc, spawn_server};
use messenger_tests::within;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A client of `server` that retries fast and logs its attempts at debug.
fn client(server: SocketAddr, extra: &[(&str, &str)]) -> Proc {
    let server = server.to_string();
    let mut env = vec![
        ("MESSENGER_SERVER_ADDR", server.as_str()),
        ("MESSENGER_HTTP_HOST", "127.0.0.1"),
        ("MESSENGER_HTTP_PORT", "0"),
        ("MESSENGER_RECONNECT_MAX_BACKOFF_MS", "20"),
        ("RUST_LOG", "info,messenger_client=debug"),
    ];
    env.extend_from_slice(extra);
    Proc::spawn("client", "messenger-client", &env)
}

fn attempts(proc: &Proc) -> usize {
    proc.lines()
        .iter()
        .filter(|l| l.text.contains("subscribe attempt failed"))
        .count()
}

#[tokio::test]
async fn a_client_that_cannot_subscribe_says_so_again_periodically_with_the_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proc = client(closed, &[("MESSENGER_RETRY_LOG_INTERVAL_MS", "300")]);
    let first = proc
        .wait_line("the first report", |l| l.text.contains("cannot subscribe"))
        .await;
    assert!(first.text.contains("WARN"), "{}", first.text);
    assert!(
        first.text.contains("the HTTP port opens once subscribed"),
        "{}",
        first.text
    );
    let again = proc
        .wait_line("the report again", |l: &Line| {
            l.text.contains("still, after")
        })
        .await;
    assert!(
        again.text.contains("WARN") && again.text.contains("cannot subscribe"),
        "{}",
        again.text
    );
    // The reason again, not only that it still fails.
    assert!(
        again.text.contains("code=Unavailable") && again.text.contains("tcp connect error"),
        "{}",
        again.text
    );
}

/// An HTTP/1-only peer: answers anything, the HTTP/2 preface included, as
/// hyper's HTTP/1 server does (`400`, then close).
async fn http1_peer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let reply =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = tcp.write_all(reply).await;
            });
        }
    });
    addr
}

/// The client at `peer` names it as not gRPC, at ERROR with the variable to
/// fix, once, while at least 5 attempts fail, and repeats no report.
async fn assert_named_not_grpc(peer: SocketAddr) {
    let proc = client(peer, &[]);
    let line = proc
        .wait_line("the diagnosis", |l| l.text.contains("is not a gRPC server"))
        .await;
    assert!(line.text.contains("ERROR"), "{}", line.text);
    assert!(line.text.contains("MESSENGER_SERVER_ADDR"), "{}", line.text);
    within("5 failed attempts", async {
        while attempts(&proc) < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    // Each kind of failure once (a peer that closes at once also gives a
    // plain transport error), never at every attempt.
    let loud: Vec<String> = proc
        .lines()
        .into_iter()
        .filter(|l| l.text.contains("ERROR") || l.text.contains("WARN"))
        .map(|l| {
            l.text
                .split_once(' ')
                .map_or(l.text.clone(), |(_, t)| t.to_owned())
        })
        .collect();
    let diagnoses = loud.iter().filter(|l| l.contains("is not a gRPC server"));
    assert_eq!(diagnoses.count(), 1, "{loud:#?}");
    let mut distinct = loud.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), loud.len(), "a report repeated: {loud:#?}");
}

#[tokio::test]
async fn a_peer_that_speaks_http1_is_named_not_a_grpc_server() {
    assert_named_not_grpc(http1_peer().await).await;
}

#[tokio::test]
async fn an_http_server_that_is_not_grpc_is_named_not_a_grpc_server() {
    // The server's metrics port: HTTP/1.1 and HTTP/2, but no gRPC.
    let server = spawn_server(&[]).await;
    assert_named_not_grpc(server.metrics_addr).await;
}
