//! W3C Trace Context conformance of the real binaries, case by case
//! ([`messenger_tests::w3c::cases`]), through a forwarding client (no
//! exporter) and a participating one (exporting to the in-process OTLP
//! receiver). Every request must answer 200 whatever its trace headers.
//!
//! What the client passed on is read at the server, which exports: for a
//! sampled context, its `SendMessage` span's parent and `tracestate`
//! (reached from the `deliver` span a trace-context subscriber is handed);
//! for an unsampled one, the `traceparent` the subscriber is handed, which
//! the server forwards unchanged.

use messenger_tests::otlp::{FlatSpan, OtlpReceiver};
use messenger_tests::procs::{spawn_client, spawn_server};
use messenger_tests::w3c::{
    Case, Expect, NOT_CONTINUED, PARENT, Parent, TRACE, cases, next_message, post_raw,
    subscribe_traced,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const SERVER: &str = "messenger-server";
const CLIENT: &str = "client1";
const RPC: &str = "mes_grpc.MessengerServer/SendMessage";
const HTTP: &str = "POST /sendMessage";

/// What the server received from the client for one request.
#[derive(Debug, PartialEq, Eq)]
struct Forwarded {
    parent: Parent,
    /// Known only for sampled contexts (the server records those).
    tracestate: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cases_through_a_forwarding_client() {
    run_cases(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cases_through_a_participating_client() {
    run_cases(true).await;
}

async fn run_cases(client_exports: bool) {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let env = |service| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let server = spawn_server(&env(SERVER)).await;
    let mut stream = subscribe_traced(server.grpc_addr).await;
    let client_env = if client_exports {
        env(CLIENT).to_vec()
    } else {
        Vec::new()
    };
    let client = spawn_client(server.grpc_addr, &client_env).await;
    let cases = cases();
    let mut handed = Vec::new();
    for case in &cases {
        let body = serde_json::json!({"author": "w3c", "text": case.name}).to_string();
        let (status, answer) =
            post_raw(client.http_addr, "/sendMessage", &case.headers, &body).await;
        assert_eq!(status, 200, "{}: {answer}", case.name);
        let message = next_message(&mut stream).await;
        assert_eq!(message.text, case.name);
        handed.push(message.traceparent);
    }
    let what = format!("{} cases (client exports: {client_exports})", cases.len());
    otlp.wait_check(&what, |spans| {
        let failures: Vec<String> = cases
            .iter()
            .zip(&handed)
            .filter_map(|(case, field)| {
                check(case, field, spans, client_exports)
                    .err()
                    .map(|why| format!("  {}: {why}", case.name))
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} failed:\n{}",
                failures.len(),
                failures.join("\n")
            ))
        }
    })
    .await;
    for proc in [&client.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }
}

fn check(case: &Case, field: &str, spans: &[FlatSpan], participating: bool) -> Result<(), String> {
    let forwarded = forwarded(field, spans)?;
    match (&case.expect, participating) {
        (
            Expect::Continue {
                sampled,
                tracestate,
            },
            false,
        ) => {
            let want = Forwarded {
                parent: upstream(*sampled),
                tracestate: sampled.then(|| tracestate.clone()),
            };
            same(forwarded.as_ref(), Some(&want))
        }
        (Expect::Continue { sampled: false, .. }, true) => {
            let want = Forwarded {
                parent: upstream(false),
                tracestate: None,
            };
            same(forwarded.as_ref(), Some(&want))
        }
        (
            Expect::Continue {
                sampled: true,
                tracestate,
            },
            true,
        ) => {
            let forwarded = forwarded.ok_or("the client passed nothing on")?;
            let http = client_http_span(&forwarded, spans)?;
            expect("HTTP span trace", &http.trace_id, TRACE)?;
            expect("HTTP span parent", &http.parent_span_id, PARENT)?;
            expect("HTTP span tracestate", &http.trace_state, tracestate)?;
            expect(
                "forwarded tracestate",
                forwarded.tracestate.as_deref().unwrap_or("?"),
                tracestate,
            )
        }
        (Expect::Restart, false) => same(forwarded.as_ref(), None),
        (Expect::Restart, true) => {
            let forwarded = forwarded.ok_or("the client passed nothing on")?;
            if NOT_CONTINUED.contains(&forwarded.parent.trace_id.as_str()) {
                return Err(format!("continued trace {}", forwarded.parent.trace_id));
            }
            let http = client_http_span(&forwarded, spans)?;
            expect("HTTP span parent", &http.parent_span_id, "")?;
            expect("HTTP span tracestate", &http.trace_state, "")
        }
    }
}

fn upstream(sampled: bool) -> Parent {
    Parent {
        trace_id: TRACE.to_owned(),
        parent_id: PARENT.to_owned(),
        sampled,
    }
}

fn same(have: Option<&Forwarded>, want: Option<&Forwarded>) -> Result<(), String> {
    (have == want)
        .then_some(())
        .ok_or_else(|| format!("forwarded {have:?}, want {want:?}"))
}

fn expect(what: &str, have: &str, want: &str) -> Result<(), String> {
    (have == want)
        .then_some(())
        .ok_or_else(|| format!("{what} is {have:?}, want {want:?}"))
}

/// What the server got from the client, judged from the `traceparent` the
/// server handed the subscriber: `None` when the client passed nothing on.
fn forwarded(field: &str, spans: &[FlatSpan]) -> Result<Option<Forwarded>, String> {
    let handed = Parent::parse(field).ok_or_else(|| format!("subscriber got {field:?}"))?;
    if !handed.sampled {
        // The server records nothing and forwards the client's context.
        return Ok(Some(Forwarded {
            parent: handed,
            tracestate: None,
        }));
    }
    let server = |id: &str| {
        spans
            .iter()
            .find(|s| s.service == SERVER && s.span_id == id)
            .ok_or_else(|| format!("server span {id} not received (yet)"))
    };
    let deliver = server(&handed.parent_id)?;
    let fanout = server(&deliver.parent_span_id)?;
    let rpc = server(&fanout.parent_span_id)?;
    if rpc.name != RPC || rpc.kind != SpanKind::Server {
        return Err(format!("not the SendMessage span: {}", rpc.summary()));
    }
    if rpc.parent_span_id.is_empty() {
        return Ok(None);
    }
    Ok(Some(Forwarded {
        parent: Parent {
            trace_id: rpc.trace_id.clone(),
            parent_id: rpc.parent_span_id.clone(),
            sampled: true,
        },
        tracestate: Some(rpc.trace_state.clone()),
    }))
}

/// The client's HTTP span above the CLIENT span the server was parented to.
fn client_http_span<'a>(
    forwarded: &Forwarded,
    spans: &'a [FlatSpan],
) -> Result<&'a FlatSpan, String> {
    let client = |id: &str| {
        spans
            .iter()
            .find(|s| s.service == CLIENT && s.span_id == id)
            .ok_or_else(|| format!("client span {id} not received (yet)"))
    };
    let rpc = client(&forwarded.parent.parent_id)?;
    if rpc.name != RPC || rpc.kind != SpanKind::Client {
        return Err(format!(
            "the server's parent is not the client's RPC span: {}",
            rpc.summary()
        ));
    }
    let http = client(&rpc.parent_span_id)?;
    (http.name == HTTP)
        .then_some(http)
        .ok_or_else(|| format!("the RPC span's parent is {}", http.summary()))
}
