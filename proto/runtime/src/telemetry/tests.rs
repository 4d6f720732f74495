use super::*;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use std::sync::{Arc, Mutex, PoisonError};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// Collects exported spans.
#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

/// Collects log output.
#[derive(Debug, Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Lines {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        self.clone()
    }
}

/// Runs `body` under the subscriber `init` builds (minus stdout and the
/// network) and returns what it logged and exported.
fn capture(format: LogFormat, body: impl FnOnce()) -> (String, Vec<SpanData>) {
    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let lines = Lines::default();
    let subscriber = tracing_subscriber::registry()
        .with(logs::layer(format, lines.clone(), false).with_filter(EnvFilter::new("info")))
        .with(traces::otel_layer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, body);
    provider.shutdown().unwrap();
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let exported = spans.0.lock().unwrap().clone();
    (log, exported)
}

#[test]
fn json_lines_carry_the_exported_span_ids_and_otel_fields_apply() {
    let (log, spans) = capture(LogFormat::Json, || {
        let span = tracing::info_span!(
            "handler",
            otel.name = "mes_grpc.MessengerServer/SendMessage",
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
        );
        let _entered = span.enter();
        tracing::info!(author = "a", "accepted");
        span.record("otel.status_code", "error");
    });
    let [span] = spans.as_slice() else {
        panic!("one span expected: {spans:?}")
    };
    assert_eq!(span.name, "mes_grpc.MessengerServer/SendMessage");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert!(
        !span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str().starts_with("otel."))
    );
    let ids = format!(
        r#"{{"trace_id":"{}","span_id":"{}","#,
        span.span_context.trace_id(),
        span.span_context.span_id()
    );
    assert!(log.starts_with(&ids), "{log}");
    assert!(log.contains(r#""message":"accepted""#), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}

#[test]
fn text_lines_end_with_the_ids() {
    let (log, spans) = capture(LogFormat::Text, || {
        let _entered = tracing::info_span!("work").entered();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        tracing::info!(grpc_addr = %addr, "listening");
    });
    let context = &spans[0].span_context;
    let tail = format!(
        " trace_id={} span_id={}\n",
        context.trace_id(),
        context.span_id()
    );
    assert!(log.ends_with(&tail), "{log}");
    assert!(log.contains("grpc_addr=127.0.0.1:1"), "{log}");
}

#[test]
fn foreign_spans_are_never_exported() {
    let (log, spans) = capture(LogFormat::Json, || {
        let _h2 = tracing::info_span!(target: "h2::proto", "poll").entered();
        tracing::info!(target: "h2::proto", "frame");
    });
    assert!(spans.is_empty(), "{spans:?}");
    assert!(log.contains("frame") && !log.contains("trace_id"), "{log}");
}

#[test]
fn foreign_spans_inside_ours_log_our_ids() {
    let (log, spans) = capture(LogFormat::Json, || {
        let _ours = tracing::info_span!("deliver").entered();
        let _tonic = tracing::info_span!(target: "tonic::transport", "call").entered();
        tracing::info!(target: "tonic::transport", "sent");
    });
    let [span] = spans.as_slice() else {
        panic!("only our span expected: {spans:?}")
    };
    let span_id = format!(r#""span_id":"{}""#, span.span_context.span_id());
    assert!(log.contains(&span_id), "{log}");
}

#[test]
fn a_remote_parent_is_kept() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, spans) = capture(LogFormat::Json, || {
        let span = tracing::info_span!("request", otel.kind = "client");
        span.set_parent(context_from_traceparent(PARENT)).unwrap();
        let cx = span.context();
        let child = traceparent(&cx).unwrap();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{child}"
        );
        assert_ne!(child, PARENT);
        assert!(cx.span().span_context().is_sampled());
    });
    let [span] = spans.as_slice() else {
        panic!("one span expected: {spans:?}")
    };
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(span.parent_span_is_remote);
}
