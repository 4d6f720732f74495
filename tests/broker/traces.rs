//! One send through replica A is one trace across both replicas: client1's
//! spans, A's `SendMessage` and `broker.publish` (PRODUCER, messaging
//! attributes), then in each replica a `broker.receive` (CONSUMER) under
//! `broker.publish`, that replica's `fanout` and `deliver` under it, and the
//! `receive` of the client subscribed there under that `deliver`.

use crate::{HEAVY, replica};
use messenger_tests::otlp::{Attr, FlatSpan, OtlpReceiver};
use messenger_tests::procs::spawn_client;
use messenger_tests::redis::RedisProc;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const RPC: &str = "mes_grpc.MessengerServer/SendMessage";

/// The one span of `service` named `name` in `trace`.
fn one<'a>(trace: &[&'a FlatSpan], service: &str, name: &str) -> Result<&'a FlatSpan, String> {
    let found: Vec<_> = (trace.iter().copied())
        .filter(|s| s.service == service && s.name == name)
        .collect();
    match found.as_slice() {
        [span] => Ok(span),
        other => Err(format!("{service} '{name}': {} spans", other.len())),
    }
}

fn under(span: &FlatSpan, kind: SpanKind, parent: &FlatSpan) -> Result<(), String> {
    let ok = span.kind == kind
        && span.parent_span_id.trim_start_matches('0') == parent.span_id.trim_start_matches('0');
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{} '{}' is {:?} under {}, want {kind:?} under {} '{}'",
            span.service, span.name, span.kind, span.parent_span_id, parent.service, parent.name
        )
    })
}

fn messaging(span: &FlatSpan, operation: &str) -> Result<(), String> {
    let want = [
        ("messaging.system", "redis"),
        ("messaging.destination.name", "messenger:chat"),
        ("messaging.operation.type", operation),
    ];
    for (key, value) in want {
        if span.attr(key) != Some(&Attr::Str(value.into())) {
            return Err(format!(
                "{} '{}': {key} is {:?}",
                span.service,
                span.name,
                span.attr(key)
            ));
        }
    }
    Ok(())
}

fn check(spans: &[FlatSpan]) -> Result<(), String> {
    let rpc_a = (spans.iter())
        .find(|s| s.service == "replica-a" && s.name == RPC)
        .ok_or("replica-a SendMessage not received (yet)")?;
    let trace: Vec<&FlatSpan> = spans
        .iter()
        .filter(|s| s.trace_id == rpc_a.trace_id)
        .collect();
    let publish = one(&trace, "replica-a", "broker.publish")?;
    under(publish, SpanKind::Producer, rpc_a)?;
    messaging(publish, "send")?;
    for (replica, client) in [("replica-a", "client1"), ("replica-b", "client2")] {
        let receive = one(&trace, replica, "broker.receive")?;
        under(receive, SpanKind::Consumer, publish)?;
        messaging(receive, "receive")?;
        let fanout = one(&trace, replica, "fanout")?;
        under(fanout, SpanKind::Producer, receive)?;
        let deliver = one(&trace, replica, "deliver")?;
        under(deliver, SpanKind::Internal, fanout)?;
        under(one(&trace, client, "receive")?, SpanKind::Consumer, deliver)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_send_is_one_trace_across_both_replicas() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let env = |service| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let a = replica("replica-a", &redis.url(), &env("replica-a")).await;
    let b = replica("replica-b", &redis.url(), &env("replica-b")).await;
    let client1 = spawn_client(a.grpc_addr, &env("client1")).await;
    let client2 = spawn_client(b.grpc_addr, &env("client2")).await;
    client1.send("alice", "traced").await;
    otlp.wait_check("the tree of one send across two replicas", check)
        .await;
    for proc in [&client1.proc, &client2.proc, &a.proc, &b.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }
}
