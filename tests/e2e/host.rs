//! The `Host` check (RFC 9112 §3.2) on every HTTP/1 listener of the real
//! binaries, spoken to over raw sockets: the client's API port (which also
//! serves its `/metrics`) and the server's metrics port. Issue 26, item 5.

use messenger_tests::http1::exchange;
use messenger_tests::procs::{spawn_client, spawn_server};
use serde_json::Value;
use std::net::SocketAddr;

/// Header lines that make a request's `Host` invalid, and what the 400 says.
const REFUSED: [(&str, &str, &str); 4] = [
    ("no Host", "", "has no Host header"),
    (
        "two Host lines",
        "Host: a\r\nHost: a\r\n",
        "has 2 Host headers",
    ),
    (
        "Host: a b",
        "Host: a b\r\n",
        "' ' is not allowed in a host name",
    ),
    (
        "Host: x:notaport",
        "Host: x:notaport\r\n",
        "port \"notaport\" is not a number in 0..=65535",
    ),
];

/// `method path` over HTTP/1.1 with `host_lines` and `body`, closing after.
fn request(method: &str, path: &str, version: &str, host_lines: &str, body: &str) -> String {
    format!(
        "{method} {path} {version}\r\n{host_lines}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Every refused `Host` on `method path` of `addr` gets 400 and a JSON error
/// saying what is wrong; a valid one and HTTP/1.0 without one are served.
async fn assert_checked(addr: SocketAddr, method: &str, path: &str, body: impl Fn(&str) -> String) {
    for (what, lines, says) in REFUSED {
        let (status, text) =
            exchange(addr, &request(method, path, "HTTP/1.1", lines, &body(what))).await;
        assert_eq!(status, 400, "{method} {path} with {what}: {text}");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: the 400 is not JSON ({e}): {text:?}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{what}: {error:?} should say {says:?}"
        );
    }
    let valid = format!("Host: {addr}\r\n");
    let (status, text) = exchange(
        addr,
        &request(method, path, "HTTP/1.1", &valid, &body("valid")),
    )
    .await;
    assert_eq!(status, 200, "{method} {path} with a valid Host: {text}");
    let (status, text) = exchange(
        addr,
        &request(method, path, "HTTP/1.0", "", &body("http/1.0")),
    )
    .await;
    assert_eq!(
        status, 200,
        "{method} {path} over HTTP/1.0 without Host: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_and_its_metrics_refuse_a_missing_repeated_or_invalid_host() {
    let server = spawn_server(&[]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let send = |author: &str| serde_json::json!({ "author": author, "text": "t" }).to_string();
    assert_checked(client.http_addr, "POST", "/sendMessage", send).await;
    assert_checked(client.http_addr, "GET", "/metrics", |_| String::new()).await;
    // Only the two accepted sends were delivered; a refused one never reached the server.
    let got = client.collect(2).await;
    let authors: Vec<&str> = got.iter().map(|m| m.author.as_str()).collect();
    assert_eq!(authors, ["valid", "http/1.0"]);
    assert!(client.flush().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_metrics_port_refuses_a_missing_repeated_or_invalid_host() {
    let server = spawn_server(&[]).await;
    assert_checked(server.metrics_addr, "GET", "/metrics", |_| String::new()).await;
}
