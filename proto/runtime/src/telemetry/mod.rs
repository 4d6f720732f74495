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
//! span ([`crate::rpc_span!`], [`record_rpc_status`]) that both binaries use;
//! the server makes its SERVER span with the SDK directly, sampled before
//! anything is built ([`crate::rpc_server_span!`], [`ServerSpan`]).

mod batch;
mod finished;
mod logs;
mod otlp_encode;
mod otlp_export;
mod processor;
mod propagation;
pub mod rpc;
mod server_span;
mod traces;
pub mod w3c;

pub use batch::{
    DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE, DEFAULT_BSP_MAX_QUEUE_SIZE, DEFAULT_BSP_SCHEDULE_DELAY,
    ENV_BSP_MAX_EXPORT_BATCH_SIZE, ENV_BSP_MAX_QUEUE_SIZE, ENV_BSP_SCHEDULE_DELAY,
};
pub use finished::{ChildSpan, export_finished, new_span_id, scope};
pub use logs::{ENV_LOG_FORMAT, ENV_RUST_LOG, LogFormat};
pub use opentelemetry_otlp::{OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT};
pub use propagation::{
    context_from_traceparent, extract_http, extract_metadata, inject_metadata, outgoing,
    outgoing_current, traceparent,
};
pub use rpc::record_rpc_status;
pub use server_span::{CodeSite, ServerSpan, event_on_current};
pub use traces::{
    ENV_OTEL_RESOURCE_ATTRIBUTES, ENV_OTEL_SERVICE_NAME, ENV_OTEL_TRACES_SAMPLER,
    ENV_OTEL_TRACES_SAMPLER_ARG,
};

use opentelemetry::global;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Every variable telemetry reads that is not a flag (standard names, read
/// by us or by the OpenTelemetry SDK), with what it does: the `--help` of
/// both binaries ends with it ([`env_help`]).
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        ENV_RUST_LOG,
        "log filter (tracing EnvFilter syntax); default info",
    ),
    (
        OTEL_EXPORTER_OTLP_ENDPOINT,
        "OTLP/gRPC collector for traces, e.g. http://localhost:4317; unset: nothing exported",
    ),
    (
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        "the same for traces only; wins over the one above",
    ),
    (
        ENV_OTEL_SERVICE_NAME,
        "service.name; default the binary's name",
    ),
    (
        ENV_OTEL_RESOURCE_ATTRIBUTES,
        "extra resource attributes, key=value,...",
    ),
    (
        ENV_OTEL_TRACES_SAMPLER,
        "sampler, e.g. parentbased_traceidratio; default parentbased_always_on",
    ),
    (
        ENV_OTEL_TRACES_SAMPLER_ARG,
        "the sampler's ratio, 0.0..=1.0",
    ),
    (
        ENV_BSP_MAX_QUEUE_SIZE,
        "spans buffered for export; default 16384",
    ),
    (
        ENV_BSP_MAX_EXPORT_BATCH_SIZE,
        "spans per export; default 4096, at most the queue",
    ),
    (
        ENV_BSP_SCHEDULE_DELAY,
        "longest a span waits for a batch, ms; default 5000",
    ),
];

/// The end of `--help`: [`ENV_VARS`], one per line.
pub fn env_help() -> String {
    let width = ENV_VARS
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut help = String::from("Also read from the environment (standard names, no flags):\n");
    for (name, what) in ENV_VARS {
        help.push_str(&format!("  {name:width$}  {what}\n"));
    }
    help
}

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
            otlp.shutdown(DEFAULT_FINAL_EXPORT_TIMEOUT);
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

/// How long the final export may take when no deadline is given (the
/// SDK's own bound).
pub const DEFAULT_FINAL_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The least the final export gets when the grace period is already spent
/// ([`TelemetryGuard::shutdown_by`]): a collector that answers takes far
/// less; a hung one costs no more than this past the grace period.
pub const FINAL_EXPORT_FLOOR: Duration = Duration::from_secs(1);

/// Keeps OTLP export running. Dropping it (or [`TelemetryGuard::shutdown`])
/// exports every finished span and stops the exporter. That blocks the calling
/// thread (at most [`DEFAULT_FINAL_EXPORT_TIMEOUT`], under a second against
/// a refused port; [`TelemetryGuard::shutdown_by`] bounds it by a deadline),
/// so do it once, at the end of `main`.
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    tracing: Option<traces::Tracing>,
}

impl TelemetryGuard {
    /// Flushes and shuts down the tracer provider now.
    pub fn shutdown(mut self) {
        self.finish(DEFAULT_FINAL_EXPORT_TIMEOUT);
    }

    /// Flushes and shuts down the tracer provider, waiting until `deadline`
    /// (the end of the grace period, [`crate::cli::StopClock`]) but at least
    /// [`FINAL_EXPORT_FLOOR`]; without a deadline, as [`Self::shutdown`].
    /// A hung collector then holds the process at most the floor past its
    /// grace period, not the SDK's five seconds.
    pub fn shutdown_by(mut self, deadline: Option<Instant>) {
        let timeout = deadline.map_or(DEFAULT_FINAL_EXPORT_TIMEOUT, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .max(FINAL_EXPORT_FLOOR)
        });
        self.finish(timeout);
    }

    fn finish(&mut self, timeout: Duration) {
        if let Some(otlp) = self.tracing.take() {
            otlp.shutdown(timeout);
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish(DEFAULT_FINAL_EXPORT_TIMEOUT);
    }
}

#[cfg(test)]
mod tests;
