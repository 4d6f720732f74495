//! The sender's trace context reaches every receiving client, sampled or
//! not, whether or not anything in between records; trace headers never make
//! a send fail; and the issue's malformed `traceparent` is never continued.
//! The receiving clients export nothing here: what they were handed is read
//! from their JSON debug line for each received message.

use messenger_tests::otlp::{FlatSpan, OtlpReceiver, TraceParent};
use messenger_tests::procs::{ClientProc, Line, find_key, spawn_client, spawn_server};
use messenger_tests::w3c::{Parent, huge_tracestate, next_message, subscribe_traced};

const SERVER: &str = "messenger-server";
const RUST_LOG: &str = "info,messenger_client=debug";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_receivers_get_the_senders_context_from_a_non_exporting_server() {
    sampled_and_unsampled_reach_both_receivers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_receivers_get_the_senders_context_from_an_exporting_server() {
    sampled_and_unsampled_reach_both_receivers(true).await;
}

async fn sampled_and_unsampled_reach_both_receivers(server_exports: bool) {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let server_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", SERVER),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let server = spawn_server(if server_exports { &server_env } else { &[] }).await;
    let logs = [("MESSENGER_LOG_FORMAT", "json"), ("RUST_LOG", RUST_LOG)];
    let client1 = spawn_client(server.grpc_addr, &logs).await;
    let client2 = spawn_client(server.grpc_addr, &logs).await;
    for sampled in [false, true] {
        let upstream = TraceParent::random();
        let flags = if sampled { "01" } else { "00" };
        let header = format!("00-{}-{}-{flags}", upstream.trace_id, upstream.span_id);
        let text = format!("sampled {sampled}");
        let send_time = client1
            .send_with("alice", &text, &[("traceparent", header.as_str())])
            .await;
        let mut handed = Vec::new();
        for client in [&client1, &client2] {
            let line = received_line(client, &send_time).await;
            let what = format!("{} ({text}): {}", client.proc.name(), line.text);
            let json = line.json().expect("JSON line");
            let trace_id = json.get("trace_id").and_then(|v| v.as_str());
            assert_eq!(trace_id, Some(upstream.trace_id.as_str()), "{what}");
            let field = find_key(&json, "traceparent").and_then(|v| v.as_str());
            let parent = field
                .and_then(Parent::parse)
                .unwrap_or_else(|| panic!("{what}"));
            assert_eq!(parent.trace_id, upstream.trace_id, "{what}");
            assert_eq!(parent.sampled, sampled, "{what}");
            if server_exports && sampled {
                // The server recorded: each receiver continues its own `deliver` span.
                assert_ne!(parent.parent_id, upstream.span_id, "{what}");
            } else {
                // Nobody recorded: the sender's context, unchanged.
                assert_eq!(field, Some(header.as_str()), "{what}");
            }
            handed.push(parent.parent_id);
        }
        if server_exports && sampled {
            assert_ne!(
                handed[0], handed[1],
                "both receivers continue the same span"
            );
            otlp.wait_for("the deliver spans the receivers continue", |spans| {
                handed.iter().all(|id| {
                    spans
                        .iter()
                        .any(|s| s.service == SERVER && s.name == "deliver" && &s.span_id == id)
                })
            })
            .await;
        }
    }
    for proc in [&client1.proc, &client2.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }
}

/// The client's debug line for the message stamped `send_time`.
async fn received_line(client: &ClientProc, send_time: &str) -> Line {
    let what = format!("'message received' for {send_time}");
    client
        .proc
        .wait_line(&what, |line| {
            line.json().is_some_and(|json| {
                find_key(&json, "message").and_then(|v| v.as_str()) == Some("message received")
                    && find_key(&json, "send_time").and_then(|v| v.as_str()) == Some(send_time)
            })
        })
        .await
}

/// The issue's 16 KiB `tracestate` (32 members of a 256-character key and
/// value) is sent with 200 and reaches the server cut to the bounds: none of
/// those members fits in 512 characters, the small ones around them do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_16_kib_tracestate_is_sent_and_arrives_cut_to_the_bounds() {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let server = spawn_server(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", SERVER),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let huge = huge_tracestate().join(",");
    assert!(huge.len() > 16 * 1024, "{}", huge.len());
    for (text, tracestate, want) in [
        ("huge", huge.clone(), ""),
        ("huge around small", format!("a=1,{huge},b=2"), "a=1,b=2"),
    ] {
        let upstream = TraceParent::random();
        let header = upstream.header();
        let headers = [
            ("traceparent", header.as_str()),
            ("tracestate", tracestate.as_str()),
        ];
        let body = serde_json::json!({"author": "a", "text": text}).to_string();
        let (status, json) = client.post("/sendMessage", body, &headers).await;
        assert_eq!(status, 200, "{text}: {json}");
        let spans = otlp
            .wait_for("the server's SendMessage span", |spans| {
                spans.iter().any(|s| is_rpc_of(s, &upstream))
            })
            .await;
        let rpc = spans
            .iter()
            .find(|s| is_rpc_of(s, &upstream))
            .expect("found above");
        assert_eq!(rpc.parent_span_id, upstream.span_id, "{}", rpc.summary());
        assert_eq!(rpc.trace_state, want, "{text}");
    }
    for proc in [&client.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }
}

fn is_rpc_of(span: &FlatSpan, upstream: &TraceParent) -> bool {
    span.service == SERVER
        && span.name == "mes_grpc.MessengerServer/SendMessage"
        && span.trace_id == upstream.trace_id
}

/// `traceparent: 00-1-0c1d2e3f4a5b6c7d-01` is ignored: the send succeeds and
/// nothing is passed on (a lenient parser forwarded `00-000…0001-…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_issue_repro_is_not_continued() {
    let server = spawn_server(&[]).await;
    let mut stream = subscribe_traced(server.grpc_addr).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let body = serde_json::json!({"author": "a", "text": "b"}).to_string();
    let headers = [("traceparent", "00-1-0c1d2e3f4a5b6c7d-01")];
    let (status, json) = client.post("/sendMessage", body, &headers).await;
    assert_eq!(status, 200, "{json}");
    let message = next_message(&mut stream).await;
    assert_eq!(message.text, "b");
    assert_eq!(
        message.traceparent, "",
        "the malformed parent was continued"
    );
    for proc in [&client.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }
}
