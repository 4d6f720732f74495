//! Telemetry shared by both binaries: logs, OTLP traces and W3C trace-context
//! propagation.
//!
//! Owns the process-wide `tracing` subscriber, the OpenTelemetry tracer
//! provider and the global text-map propagator (W3C `traceparent`/`tracestate`,
//! parsed strictly by [`w3c`], never by the SDK).
//!
//! Invariants:
//! - Installed at most once per process: the first [`init`] or [`init_logging`]
//!   wins, later calls are no-ops (tests run several apps in one process).
//! - Traces are exported only when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without one there is no exporter, no
//!   tracer provider and nothing is printed about it.
//! - Only spans and events whose target starts with `messenger` reach
//!   OpenTelemetry, so the exporter's own tonic/hyper/h2/tower spans are never
//!   exported (no self-tracing).
//! - A log line written while an OpenTelemetry span is current carries that
//!   span's `trace_id`/`span_id`, the same ids the exporter sends.
//! - Bad telemetry env never panics: it is logged as a warning and ignored.
//!
//! [`rpc`] holds the one shape of the `mes_grpc.MessengerServer/<Method>`
//! span ([`crate::rpc_span!`], [`record_rpc_status`]) that both binaries use.

mod logs;
mod propagation;
pub mod rpc;
mod traces;
pub mod w3c;

pub use logs::{ENV_LOG_FORMAT, ENV_RUST_LOG, LogFormat};
pub use propagation::{
    context_from_traceparent, extract_http, extract_metadata, inject_metadata, outgoing,
    outgoing_current, traceparent,
};
pub use rpc::record_rpc_status;
pub use traces::{ENV_OTEL_SERVICE_NAME, ENV_OTEL_TRACES_SAMPLER, ENV_OTEL_TRACES_SAMPLER_ARG};

use opentelemetry::global;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Set by the first [`init`]/[`init_logging`]; the global subscriber and the
/// tracer provider can only be installed once.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs logging (+ OTLP tracing when configured) and the W3C TraceContext
/// global propagator.
///
/// `default_service_name` is the `service.name` used when neither
/// `OTEL_SERVICE_NAME` nor `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is set.
/// Keep the returned guard alive until the end of `main`: dropping it flushes
/// and shuts down tracing. A second call returns a guard that does nothing.
/// Works inside or outside a Tokio runtime of either flavour: the exporter
/// runs on a small runtime of its own.
pub fn init(default_service_name: &'static str, log_format: LogFormat) -> TelemetryGuard {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return TelemetryGuard { tracing: None };
    }
    let mut warnings = Vec::new();
    let otlp = traces::Tracing::from_env(default_service_name, &mut warnings);
    install(log_format, otlp, warnings)
}

/// Installs logging only (never OTLP export) and the W3C propagator. Later
/// calls keep the first subscriber.
pub fn init_logging(format: LogFormat) {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    // Without an exporter the guard has nothing to shut down.
    let _logs_only = install(format, None, Vec::new());
}

fn install(
    format: LogFormat,
    otlp: Option<traces::Tracing>,
    mut warnings: Vec<String>,
) -> TelemetryGuard {
    let otel_layer = otlp.as_ref().map(traces::Tracing::layer);
    let filter = logs::env_filter(&mut warnings);
    let installed = tracing_subscriber::registry()
        .with(logs::stdout_layer(format).with_filter(filter))
        .with(otel_layer)
        .try_init()
        .is_ok();
    if !installed {
        // Someone else owns the global subscriber, so our layer would never
        // see a span; exporting nothing beats a half-installed state.
        if let Some(otlp) = otlp {
            otlp.shutdown();
        }
        return TelemetryGuard { tracing: None };
    }
    global::set_text_map_propagator(w3c::W3cPropagator);
    // Only now is there a subscriber to show them.
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if let Some(otlp) = &otlp {
        otlp.install_global();
    }
    TelemetryGuard { tracing: otlp }
}

/// Tracer for spans made directly with the OpenTelemetry API (e.g. spans that
/// need an explicit start time). A no-op tracer when tracing is off.
pub fn tracer() -> global::BoxedTracer {
    global::tracer(traces::TRACER_NAME)
}

/// Keeps OTLP export running. Dropping it (or [`TelemetryGuard::shutdown`])
/// exports every finished span and stops the exporter. That blocks the calling
/// thread (at most about five seconds, under a second against a refused
/// port), so do it once, at the end of `main`.
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    tracing: Option<traces::Tracing>,
}

impl TelemetryGuard {
    /// Flushes and shuts down the tracer provider now.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(otlp) = self.tracing.take() {
            otlp.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
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
}
