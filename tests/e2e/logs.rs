//! JSON logs of the real binaries: every stdout line is one JSON object, and
//! the log lines written while handling a request carry that request's trace
//! id, in the client and in the server, so logs and traces join.

use messenger_tests::otlp::{OtlpReceiver, TraceParent};
use messenger_tests::procs::{Line, Pipe, Proc, spawn_client, spawn_server};
use serde_json::Value;

const RUST_LOG: &str = "info,messenger_client=debug,messenger_server=debug,tower_http=debug";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_log_lines_carry_the_request_trace_id() {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let env = |service| {
        [
            ("MESSENGER_LOG_FORMAT", "json"),
            ("RUST_LOG", RUST_LOG),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let server = spawn_server(&env("messenger-server")).await;
    let client = spawn_client(server.grpc_addr, &env("client1")).await;

    let upstream = TraceParent::random();
    let header = upstream.header();
    client
        .send_with("erin", "logged", &[("traceparent", header.as_str())])
        .await;
    let what = format!("a log line with trace_id {}", upstream.trace_id);
    for proc in [&client.proc, &server.proc] {
        proc.wait_line(&what, |l| carries_trace(l, &upstream.trace_id))
            .await;
    }

    for proc in [&client.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
        assert_all_json(proc);
    }
}

/// Every stdout line, start-up to shutdown, is a JSON object.
fn assert_all_json(proc: &Proc) {
    let stdout: Vec<Line> = proc
        .lines()
        .into_iter()
        .filter(|l| l.pipe == Pipe::Stdout)
        .collect();
    assert!(!stdout.is_empty(), "{} logged nothing", proc.name());
    for line in stdout {
        assert!(
            line.json().is_some(),
            "{}: not a JSON object: {}",
            proc.name(),
            line.text
        );
    }
}

fn carries_trace(line: &Line, trace_id: &str) -> bool {
    line.json().is_some_and(|v| has_trace_id(&v, trace_id))
}

/// Whether a `trace_id` (or `traceId`, or `*.trace_id`) field anywhere in
/// `value` holds `trace_id`.
fn has_trace_id(value: &Value, trace_id: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, v)| {
            let is_key = key == "trace_id" || key == "traceId" || key.ends_with(".trace_id");
            (is_key && v.as_str() == Some(trace_id)) || has_trace_id(v, trace_id)
        }),
        Value::Array(items) => items.iter().any(|v| has_trace_id(v, trace_id)),
        _ => false,
    }
}

/// The caller's bad input is the caller's: an author over the server's limit
/// (400 from the server's INVALID_ARGUMENT) and a position sent twice (400
/// from the client) are logged at debug level, never as a warning per
/// request, which would let any caller fill the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_bad_input_is_not_a_warning_in_the_client_log() {
    let server = spawn_server(&[]).await;
    let debug = [("RUST_LOG", "info,messenger_client::error=debug")];
    let client = spawn_client(server.grpc_addr, &debug).await;
    let author = "a".repeat(300);
    let body = serde_json::json!({ "author": author, "text": "x" }).to_string();
    let (status, json) = client.post("/sendMessage", body, &[]).await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("256 bytes"),
        "{json}"
    );
    let rejected =
        |l: &Line| l.text.contains("request rejected") || l.text.contains("request failed");
    let said = client
        .proc
        .wait_line("the refusal's log line", rejected)
        .await;
    assert!(said.text.contains(" DEBUG "), "{}", said.text);
    let warned: Vec<_> = client
        .proc
        .lines()
        .into_iter()
        .filter(|l| l.text.contains(" WARN ") || l.text.contains(" ERROR "))
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
}
