//! The client's overload protection: a request that outlives
//! `MESSENGER_HTTP_TIMEOUT_MS` gets a 504 JSON error, requests past
//! `MESSENGER_HTTP_MAX_CONCURRENCY` are shed with 503 + Retry-After while the
//! probes keep answering, and `/openapi.json` describes the API.

use messenger_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a `POST /sendMessage` that announces a body it never finishes, so the
/// request stays in flight (reading its body) until the client gives up.
async fn stalled_send(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut conn = within("connect", TcpStream::connect(addr)).await.unwrap();
    let head = format!(
        "POST /sendMessage HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n{{\"author\":"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// Reads a whole `Connection: close`-style response: (status, headers+body text).
async fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    within("response", async {
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                head.lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .is_some_and(|len| body.len() >= len)
            });
            if n == 0 || complete {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn json_error(response: &str) -> String {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    json["error"].as_str().expect("error string").to_owned()
}

#[tokio::test]
async fn a_request_past_the_deadline_gets_504_json() {
    let server = TestServer::start().await;
    let client = TestClient::start_with(server.addr, |c| c.http_timeout_ms = 300).await;
    let mut conn = stalled_send(&client.base).await;
    let (status, response) = read_response(&mut conn).await;
    assert_eq!(status, 504, "{response}");
    assert!(
        json_error(&response).contains("MESSENGER_HTTP_TIMEOUT_MS"),
        "{response}"
    );
    // The client still serves, and nothing half-sent reached the chat.
    let ok = client.send("a", "after the timeout").await;
    assert_eq!(client.collect(1).await[0].send_time, ok);
    client.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_are_shed_and_probes_still_answer() {
    let server = TestServer::start().await;
    let client = TestClient::start_with(server.addr, |c| c.http_max_concurrency = 1).await;
    let mut stalled = stalled_send(&client.base).await;
    // Until the stalled request holds the only slot, a send may still get through.
    let shed = within("a send is shed", async {
        loop {
            let r = client
                .http
                .post(format!("{}/sendMessage", client.base))
                .body(r#"{"author":"a","text":"b"}"#)
                .send()
                .await
                .unwrap();
            if r.status() == 503 {
                break r;
            }
            assert_eq!(r.status(), 200);
        }
    })
    .await;
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("MESSENGER_HTTP_MAX_CONCURRENCY"),
        "{body}"
    );
    for probe in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = client
            .http
            .get(format!("{}{probe}", client.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe} is never shed");
    }
    // Freeing the slot (the stalled body is abandoned) lets sends through again.
    stalled.shutdown().await.unwrap();
    let _ = read_response(&mut stalled).await;
    within("sends pass again", async {
        loop {
            let (status, _) = client
                .post("/sendMessage", r#"{"author":"a","text":"again"}"#)
                .await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            tokio::task::yield_now().await;
        }
    })
    .await;
    client.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let server = TestServer::start().await;
    let client = TestClient::start(server.addr).await;
    let doc: Value = client
        .http
        .get(format!("{}/openapi.json", client.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let send = &doc["paths"]["/sendMessage"]["post"];
    for status in ["200", "400", "413", "503", "504"] {
        assert!(
            send["responses"][status].is_object(),
            "sendMessage {status}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let request = &schemas["SendRequest"];
    let mut required: Vec<_> = request["required"].as_array().unwrap().iter().collect();
    required.sort_by_key(|v| v.as_str());
    assert_eq!(required, ["author", "text"]);
    assert_eq!(schemas["ErrorBody"]["required"][0], "error");
    let message = &schemas["BufferedMessage"]["properties"];
    for field in ["author", "text", "sendTime"] {
        assert_eq!(message[field]["type"], "string", "{field}");
    }
    for path in ["/getAndFlushMessages", "/healthz", "/readyz", "/metrics"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    client.stop().await;
    server.stop().await.unwrap();
}
