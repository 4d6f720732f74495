//! Caller input repeated in errors is bounded by the one quote rule
//! (`messenger_proto::quote`: at most 64 characters, a cut marked with `…`
//! and the input's length), on the real server and client binaries. A new user's field
//! report: a 20 KB health service name and a 12 KB unknown method path came
//! back whole in `grpc-message`, and C-core clients (grpcio, C++) saw
//! `RESOURCE_EXHAUSTED "Stream removed (received metadata size exceeds hard
//! limit)"` instead of NOT_FOUND / UNIMPLEMENTED.

use messenger_proto::quote::QUOTE_MAX_CHARS;
use messenger_tests::http1::exchange;
use messenger_tests::procs::{spawn_client, spawn_server};
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame};
use messenger_tests::*;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The longest message a quoted refusal may have: its own words and one
/// quote of ASCII input (64 characters, the marker), far under any limit.
const BOUND: usize = 300;

/// Asserts `message` is under [`BOUND`], quotes exactly the first
/// [`QUOTE_MAX_CHARS`] characters of `input` (ASCII) and carries the cut
/// marker with the input's length.
fn assert_quoted_cut(what: &str, message: &str, input: &str) {
    assert!(
        message.len() < BOUND,
        "{what}: {} bytes: {message:.400}",
        message.len()
    );
    let shown = &input[..QUOTE_MAX_CHARS];
    assert!(
        message.contains(&format!("\"{shown}\"")),
        "{what}: {message}"
    );
    assert!(
        message.contains(&format!(" ({} bytes)", input.len())),
        "{what}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20kb_health_service_name_is_not_found_with_a_bounded_message() {
    let server = spawn_server(&[]).await;
    let endpoint = Channel::from_shared(format!("http://{}", server.grpc_addr)).unwrap();
    let mut health = HealthClient::new(within("connect", endpoint.connect()).await.unwrap());
    let service = "s".repeat(20_000);
    let request = HealthCheckRequest {
        service: service.clone(),
    };
    let status = within("Check", health.check(request))
        .await
        .expect_err("an unknown service");
    assert_eq!(status.code(), Code::NotFound, "{:.400}", status.message());
    assert_quoted_cut("health Check", status.message(), &service);
    assert!(
        status.message().starts_with("unknown service \""),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12kb_unknown_method_path_is_unimplemented_with_a_bounded_message() {
    let server = spawn_server(&[]).await;
    let mut raw = Raw::connect(server.grpc_addr).await;
    let valid = encoded_request(b"hello");
    let one = frame(false, valid.len() as u32, &valid);
    let path = format!("/mes_grpc.MessengerServer/{}", "m".repeat(12_000));
    let (code, message) = raw.call(&path, "application/grpc", one.clone()).await;
    assert_eq!(code, Code::Unimplemented as i32, "{message:.400}");
    // `message` is the grpc-message value as sent, still percent-encoded.
    assert_quoted_cut("unknown method", &message, &path);
    // tonic's own message for an unsupported grpc-encoding quotes the
    // caller's value: it is bounded by the same rule.
    let encoding = "z".repeat(12_000);
    let (code, message) = raw
        .call_with(
            SEND_PATH,
            "application/grpc",
            &[("grpc-encoding", &encoding)],
            frame(true, valid.len() as u32, &valid),
        )
        .await;
    assert_eq!(code, Code::Unimplemented as i32, "{message:.400}");
    assert_quoted_cut("unsupported grpc-encoding", &message, &encoding);
    // The connection still serves a valid call.
    let (code, message) = raw.call(SEND_PATH, "application/grpc", one).await;
    assert_eq!(code, Code::Ok as i32, "{message}");
}

/// `GET path` over HTTP/1.1 with `host_line`, closing after.
fn get(method: &str, path: &str, host_line: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_quotes_a_20kb_host_and_answers_404_405_in_json() {
    let server = spawn_server(&[]).await;
    let addr = server.metrics_addr;
    let host = format!("{} b", "h".repeat(20_000));
    let (status, body) =
        exchange(addr, &get("GET", "/metrics", &format!("Host: {host}\r\n"))).await;
    assert_eq!(status, 400, "{body:.400}");
    let json: Value = serde_json::from_str(&body).expect("a JSON error");
    let error = json["error"].as_str().unwrap_or_default();
    assert_quoted_cut("Host", error, &host);
    let valid = format!("Host: {addr}\r\n");
    let long_path = format!("/{}", "p".repeat(12_000));
    for (method, path, code, says) in [
        ("GET", "/nope", 404, "no route for \"GET\" \"/nope\""),
        (
            "POST",
            "/metrics",
            405,
            "method \"POST\" is not allowed on \"/metrics\"",
        ),
        ("GET", long_path.as_str(), 404, "no route for \"GET\""),
    ] {
        let (status, body) = exchange(addr, &get(method, path, &valid)).await;
        assert_eq!(status, code, "{method} {path:.80}: {body:.400}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path:.80}: not JSON ({e}): {body:?}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{error}");
        assert!(error.contains("GET /metrics"), "{error}");
        assert!(error.len() < BOUND, "{} bytes: {error:.400}", error.len());
    }
}

/// The client's field report: its 404 and 405 repeated the caller's whole
/// path and method (a 12 KB path, a 12 KB method), and a position's quote
/// was cut without saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_404_405_and_positions_quote_long_input_cut() {
    let server = spawn_server(&[]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let addr = client.http_addr;
    let valid = format!("Host: {addr}\r\n");
    let routes = messenger_client::paths::routes_line();
    let long_path = format!("/{}", "p".repeat(12_000));
    let long_method = "M".repeat(12_000);
    let position = format!("{}:1", "e".repeat(12_000));
    let since = format!("/events?since={position}");
    let last_event_id = format!("{valid}Last-Event-ID: {position}\r\n");
    for (what, request, code, input) in [
        ("path", get("GET", &long_path, &valid), 404, &long_path),
        (
            "method",
            get(&long_method, "/sendMessage", &valid),
            405,
            &long_method,
        ),
        (
            "method and path",
            get(&long_method, &long_path, &valid),
            404,
            &long_method,
        ),
        ("?since=", get("GET", &since, &valid), 400, &position),
        (
            "Last-Event-ID",
            get("GET", "/events", &last_event_id),
            400,
            &position,
        ),
    ] {
        let (status, body) = exchange(addr, &request).await;
        assert_eq!(status, code, "{what}: {body:.400}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body:.400}"));
        let error = json["error"].as_str().unwrap_or_default();
        // The 404 lists the routes besides its quotes.
        let own = error.replace(&routes, "");
        assert_quoted_cut(what, &own, input);
    }
}
