//! The HTTP client: start-up order, reconnect, errors as JSON with the right status.

use messenger_tests::*;
use serde_json::Value;
use std::net::TcpListener;

/// Waits for the client's stream state to become `subscribed`, then checks
/// that `/readyz` reports the same.
async fn wait_ready(client: &TestClient, subscribed: bool) {
    let mut rx = client.subscribed.clone();
    within("stream state", rx.wait_for(|s| *s == subscribed))
        .await
        .expect("client alive");
    let r = client
        .http
        .get(format!("{}/readyz", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), if subscribed { 200 } else { 503 });
    assert!(
        r.json::<Value>().await.unwrap().is_object(),
        "readyz answers JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_waits_for_the_server_and_reconnects_after_a_restart() {
    // Reserve a port, free it, and start the client before any server exists.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = tokio::spawn(TestClient::start(addr));
    let server = TestServer::start_with(|c| c.port = port).await;
    let client = within("client subscribes once the server is up", client)
        .await
        .unwrap();
    server.wait_subscribers(1).await;

    let first = client.send("a", "before restart").await;
    assert_eq!(client.collect(1).await[0].send_time, first);

    server.stop().await.unwrap();
    wait_ready(&client, false).await;
    let (status, json) = client
        .post("/sendMessage", r#"{"author":"a","text":"while down"}"#)
        .await;
    assert_eq!(status, 503, "{json}");
    assert!(json["error"].as_str().unwrap().contains("retry"), "{json}");

    let server = TestServer::start_with(|c| c.port = port).await;
    server.wait_subscribers(1).await;
    wait_ready(&client, true).await;
    let second = client.send("a", "after restart").await;
    let got = client.collect(1).await;
    assert_eq!(
        (got[0].text.as_str(), got[0].send_time.as_str()),
        ("after restart", second.as_str())
    );
    client.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let server = TestServer::start().await;
    let client = TestClient::start(server.addr).await;
    let deep = format!(
        r#"{{"author":"a","text":"b","x":{}{}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty", b"".to_vec(), 400),
        ("malformed", b"{\"author\":".to_vec(), 400),
        ("missing field", br#"{"author":"a"}"#.to_vec(), 400),
        ("wrong type", br#"{"author":"a","text":5}"#.to_vec(), 400),
        ("array", br#"["a","b"]"#.to_vec(), 400),
        (
            "invalid utf-8",
            b"{\"author\":\"\xc3\x28\",\"text\":\"b\"}".to_vec(),
            400,
        ),
        ("deep nesting", deep.into_bytes(), 400),
        ("too large", vec![b' '; (1 << 20) + 1], 413),
        (
            "text over the server limit",
            format!(r#"{{"author":"a","text":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
            400,
        ),
    ];
    for (name, body, want) in cases {
        let (status, json) = client.post("/sendMessage", body).await;
        assert_eq!(status, want, "{name}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {json}"
        );
    }
    let r = client
        .http
        .get(format!("{}/sendMessage", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = client
        .http
        .post(format!("{}/nope", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // Nothing above reached the chat.
    let ok = client.send("a", "fine").await;
    assert_eq!(client.collect(1).await[0].send_time, ok);
    client.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn form_content_type_is_read_as_json_and_flush_empties() {
    let server = TestServer::start().await;
    let client = TestClient::start(server.addr).await;
    let r = client
        .http
        .post(format!("{}/sendMessage", client.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"author": "alice", "text": "hey"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let send_time = r.json::<Value>().await.unwrap()["sendTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = client.collect(1).await;
    assert_eq!(
        got[0],
        Msg {
            author: "alice".into(),
            text: "hey".into(),
            send_time
        }
    );
    let (status, json) = client.post("/getAndFlushMessages", "").await;
    assert_eq!(
        (status, json),
        (200, Value::Array(vec![])),
        "empty buffer is [], never null"
    );
    client.stop().await;
    server.stop().await.unwrap();
}

/// proto/CONTRACT.md: a message sent through a client always appears in that
/// client's own buffer. `/sendMessage` answers only once its own copy is
/// buffered, so a flush right after the answer holds it, with no sleep (found
/// by review with the real binaries: about 1 in 70 immediate flushes lacked
/// it, because the answer could overtake the client's own stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flush_right_after_the_answer_holds_the_message_just_sent() {
    let server = messenger_tests::procs::spawn_server(&[]).await;
    let client = messenger_tests::procs::spawn_client(server.grpc_addr, &[]).await;
    let mut lacked = Vec::new();
    for i in 0..3000 {
        let text = format!("own copy {i}");
        let send_time = client.send("ann", &text).await;
        let flushed = client.flush().await;
        if !flushed
            .iter()
            .any(|m| m.text == text && m.send_time == send_time)
        {
            lacked.push(i);
        }
    }
    assert!(
        lacked.is_empty(),
        "flushes right after the answer lacked the message: sends {lacked:?}"
    );
}

/// A buffer nobody flushes is bounded in bytes as well as in messages
/// (100,000 messages of 64 KiB would be 6.4 GB): past
/// `MESSENGER_CLIENT_BUFFER_BYTES` the oldest are dropped and counted, the
/// rest come back in order, the newest always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_past_its_bytes_drops_the_oldest_and_counts_them() {
    use messenger_tests::procs::{spawn_client, spawn_server};
    const SENT: usize = 100;
    const TEXT_BYTES: usize = 20 * 1024;
    const BUDGET: usize = 1024 * 1024;
    let server = spawn_server(&[]).await;
    let budget = BUDGET.to_string();
    let client = spawn_client(
        server.grpc_addr,
        &[("MESSENGER_CLIENT_BUFFER_BYTES", budget.as_str())],
    )
    .await;
    let filler = "x".repeat(TEXT_BYTES);
    let mut last = String::new();
    for i in 0..SENT {
        last = client.send("b", &format!("{i:03} {filler}")).await;
    }
    let flushed = client.flush().await;
    let bytes: usize = flushed
        .iter()
        .map(|m| m.author.len() + m.text.len() + m.send_time.len() + 64)
        .sum();
    assert!(bytes <= BUDGET, "{bytes} bytes buffered");
    let kept = flushed.len();
    assert!(kept > 0 && kept < SENT, "{kept} of {SENT} kept");
    assert_eq!(
        flushed.last().unwrap().send_time,
        last,
        "the newest is kept"
    );
    for (m, i) in flushed.iter().zip(SENT - kept..) {
        assert!(
            m.text.starts_with(&format!("{i:03} ")),
            "in order, oldest dropped"
        );
    }
    let m = messenger_tests::prom::scrape(&client.metrics_url()).await;
    let dropped = m.value("messenger_client_dropped_total", &[]);
    assert_eq!(dropped, Some((SENT - kept) as f64));
}

/// A page on another site can make a browser POST `text/plain` JSON to a
/// client on localhost with no CORS preflight (the body is read as JSON
/// whatever its type). The `Origin` the browser adds is checked against
/// `Host`: a foreign or `null` origin gets a 403 naming it, and neither
/// posts nor empties the buffer; the client's own page and callers without
/// `Origin` (curl, the course's tests) are served as before.
#[tokio::test]
async fn a_cross_site_post_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let client = TestClient::start(server.addr).await;
    let kept = client.send("a", "kept").await;
    let post = |path: &str, origin: &str, body: &str| {
        client
            .http
            .post(format!("{}{path}", client.base))
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(body.to_owned())
            .send()
    };
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        for (path, body) in [
            ("/getAndFlushMessages", ""),
            ("/sendMessage", r#"{"author":"evil","text":"forged"}"#),
        ] {
            let r = post(path, origin, body).await.unwrap();
            assert_eq!(r.status().as_u16(), 403, "{origin} {path}");
            let error = r.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                error.starts_with("cross-site request refused: Origin \"")
                    && error.contains(origin),
                "{origin} {path}: {error}"
            );
        }
    }
    // The refused flushes left the buffer whole.
    let got = client.flush().await;
    assert_eq!(
        got.iter().map(|m| m.send_time.as_str()).collect::<Vec<_>>(),
        [kept.as_str()]
    );
    // The client's own page (Origin = its own scheme, host and port) posts.
    let own = post(
        "/sendMessage",
        &client.base,
        r#"{"author":"page","text":"own"}"#,
    )
    .await
    .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let own: Value = own.json().await.unwrap();
    // One total order: a forged message accepted earlier would come first.
    let got = client.collect(1).await;
    assert_eq!(
        (got[0].text.as_str(), Some(got[0].send_time.as_str())),
        ("own", own["sendTime"].as_str())
    );
    client.stop().await;
    server.stop().await.unwrap();
}

/// DNS rebinding: a page served as `evil.example:PORT` whose name then
/// resolves to the client is "same origin" to the browser, so a browser's
/// request (one with `Origin`) must also name a host the client answers
/// browsers on: an IP address, `localhost`, or `MESSENGER_HTTP_ALLOWED_HOSTS`.
/// A proxy's name is allowed once configured, and a `Host` without a port
/// takes the port of the `Origin`'s scheme (https behind a proxy on 443).
#[tokio::test]
async fn a_browser_request_for_a_rebound_name_is_refused_and_a_configured_one_served() {
    let server = TestServer::start().await;
    let client = TestClient::start_with(server.addr, |c| {
        c.http_allowed_hosts = vec!["chat.test".to_owned()];
    })
    .await;
    let kept = client.send("a", "kept").await;
    let port = client.base.rsplit(':').next().unwrap().to_owned();
    let post = |path: &str, host: &str, origin: &str| {
        client
            .http
            .post(format!("{}{path}", client.base))
            .header("host", host)
            .header("origin", origin)
            .body(r#"{"author":"page","text":"via proxy"}"#)
            .send()
    };
    let evil = format!("evil.example:{port}");
    for path in ["/getAndFlushMessages", "/sendMessage"] {
        let r = post(path, &evil, &format!("http://{evil}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        let error = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains("\"evil.example:") && error.contains("MESSENGER_HTTP_ALLOWED_HOSTS"),
            "{path}: {error}"
        );
    }
    let got = client.flush().await;
    assert_eq!(
        got.iter().map(|m| m.send_time.as_str()).collect::<Vec<_>>(),
        [kept.as_str()],
        "the refused flush left the buffer whole"
    );
    // Two Origin headers: a browser never sends them; refused.
    let r = client
        .http
        .post(format!("{}/getAndFlushMessages", client.base))
        .header("origin", client.base.as_str())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The configured name, as a browser behind a TLS proxy on 443 sends it.
    let r = post("/sendMessage", "chat.test", "https://chat.test")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let sent: Value = r.json().await.unwrap();
    let got = client.collect(1).await;
    assert_eq!(
        (got[0].text.as_str(), Some(got[0].send_time.as_str())),
        ("via proxy", sent["sendTime"].as_str())
    );
    client.stop().await;
    server.stop().await.unwrap();
}
