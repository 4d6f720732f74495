//! [`super::ServerSpan`] against the bridge it replaces.

use super::*;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

fn provider(sampler: Sampler) -> (SdkTracerProvider, Spans) {
    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(spans.clone())
        .build();
    (provider, spans)
}

fn keys(attributes: &[KeyValue]) -> Vec<&str> {
    attributes.iter().map(|kv| kv.key.as_str()).collect()
}

/// The span an operator sees is the one the bridge made of
/// `rpc_span!(server, ..)` with a `debug!` event inside: name, kind,
/// attributes in order, status, and the event with its attributes.
#[test]
fn a_sampled_span_is_the_one_the_bridge_made() {
    let (bridged, spans) = provider(Sampler::AlwaysOn);
    let subscriber = tracing_subscriber::registry()
        .with(super::super::traces::otel_layer(bridged.tracer("test")));
    tracing::subscriber::with_default(subscriber, || {
        let span = crate::rpc_span!(server, "SendMessage");
        span.in_scope(|| tracing::debug!(subscribers = 2_i64, "message accepted"));
        crate::telemetry::record_rpc_status(&span, tonic::Code::InvalidArgument);
    });
    bridged.shutdown().unwrap();
    let bridge = spans.0.lock().unwrap().pop().expect("the bridge's span");

    let (direct, spans) = provider(Sampler::AlwaysOn);
    let mut span = ServerSpan::start_with(
        Some(&direct.tracer("test")),
        "mes_grpc.MessengerServer/SendMessage",
        "SendMessage",
        crate::code_site!(),
        Context::new(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(span.run(async {
        let site = crate::code_site!();
        event_on_current("message accepted", tracing::Level::DEBUG, site, || {
            vec![KeyValue::new("subscribers", 2_i64)]
        });
    }));
    span.finish(tonic::Code::InvalidArgument);
    direct.shutdown().unwrap();
    let ours = spans.0.lock().unwrap().pop().expect("our span");

    assert_eq!(ours.name, bridge.name);
    assert_eq!(ours.span_kind, bridge.span_kind);
    assert_eq!(ours.status, bridge.status);
    assert_eq!(keys(&ours.attributes), keys(&bridge.attributes));
    for key in [
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
    ] {
        let value = |s: &SpanData| {
            let kv = s.attributes.iter().find(|kv| kv.key.as_str() == key);
            kv.map(|kv| kv.value.clone())
        };
        assert_eq!(value(&ours), value(&bridge), "{key}");
    }
    let events = |s: &SpanData| -> Vec<(String, Vec<String>)> {
        let events = s.events.events.iter();
        events
            .map(|e| {
                (
                    e.name.to_string(),
                    keys(&e.attributes).into_iter().map(str::to_owned).collect(),
                )
            })
            .collect()
    };
    assert_eq!(events(&ours), events(&bridge));
}

/// Unsampled: nothing is exported, yet the context carries a valid,
/// unsampled span of ours to pass on; without a tracer, the caller's.
#[test]
fn an_unsampled_call_records_nothing_and_still_has_a_context() {
    let (provider, spans) = provider(Sampler::AlwaysOff);
    let tracer = provider.tracer("test");
    let span = ServerSpan::start_with(Some(&tracer), "n", "m", crate::code_site!(), Context::new());
    let cx = span.cx.span().span_context().clone();
    assert!(
        cx.is_valid() && !cx.is_sampled() && !cx.is_remote(),
        "{cx:?}"
    );
    span.finish(tonic::Code::Ok);
    provider.shutdown().unwrap();
    assert!(spans.0.lock().unwrap().is_empty());

    let caller = Context::new().with_remote_span_context(cx.clone());
    let span = ServerSpan::start_with(None, "n", "m", crate::code_site!(), caller);
    assert_eq!(span.cx.span().span_context(), &cx);
}
