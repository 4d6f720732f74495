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
