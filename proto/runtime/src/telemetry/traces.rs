//! OTLP/gRPC trace export and the `tracing` → OpenTelemetry bridge.
//!
//! The SDK reads most of the standard env itself: `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` (resource detectors) and `OTEL_TRACES_SAMPLER(_ARG)`;
//! our exporter ([`super::otlp_export`]) reads the OTLP headers and timeout,
//! and [`super::batch`] the `OTEL_BSP_*` sizes and delay of our batch
//! processor ([`super::processor`]). This module decides whether to export
//! at all (the endpoint), supplies the default `service.name`, and warns
//! about values that would be silently (or invisibly, see `logs`) ignored.

use super::otlp_export::OtlpExporter;
use super::processor::Batcher;
use opentelemetry::{Key, global, trace::TracerProvider as _};
use opentelemetry_otlp::{OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT};
use opentelemetry_sdk::{
    Resource,
    resource::{EnvResourceDetector, ResourceDetector as _},
    trace::{SdkTracer, SdkTracerProvider},
};
use opentelemetry_semantic_conventions::resource::SERVICE_NAME;
use std::env;
use tokio::runtime::Runtime;
use tracing::{Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::{
    Layer,
    filter::{FilterFn, Filtered, LevelFilter, filter_fn},
    registry::LookupSpan,
};

/// The standard OpenTelemetry variables this module reads itself (the SDK
/// reads them too; the OTLP endpoints come from `opentelemetry_otlp`).
pub const ENV_OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const ENV_OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub const ENV_OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Read by the SDK's resource detector (`service.name=...,key=value`).
pub const ENV_OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Instrumentation scope of every span we create.
pub(super) const TRACER_NAME: &str = "messenger";

/// Target prefix shared by our crates (`messenger_server`, `messenger_client`,
/// `messenger_runtime`); everything else stays out of OpenTelemetry.
const OUR_TARGETS: &str = "messenger";

/// Samplers the 0.33 SDK implements (it falls back to `parentbased_always_on`).
const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Batch-processor env, whose values that are not numbers are ignored.
/// (`OTEL_BSP_EXPORT_TIMEOUT` and `OTEL_BSP_MAX_CONCURRENT_EXPORTS` have no
/// effect, as with the SDK's thread-based processor; `OTEL_EXPORTER_OTLP_TIMEOUT`,
/// 10 s, bounds an export.)
const BSP_VARS: [&str; 5] = [
    super::batch::ENV_BSP_SCHEDULE_DELAY,
    super::batch::ENV_BSP_MAX_QUEUE_SIZE,
    super::batch::ENV_BSP_MAX_EXPORT_BATCH_SIZE,
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
];

/// The `tracing` layer that turns our spans into OpenTelemetry spans.
pub(super) type OtelLayer<S> =
    Filtered<OpenTelemetryLayer<S, SdkTracer>, FilterFn<fn(&Metadata<'_>) -> bool>, S>;

/// A running exporter: the tracer provider and the runtime its gRPC client
/// lives on.
#[derive(Debug)]
pub(super) struct Tracing {
    provider: SdkTracerProvider,
    /// The batch processor exports from its own thread and blocks on the
    /// export future; the tonic channel's I/O runs here. A private runtime
    /// keeps that working whatever runtime flavour the caller uses, and even
    /// while the caller blocks in `shutdown`.
    runtime: Runtime,
    endpoint: String,
    service_name: String,
}

impl Tracing {
    /// Builds the exporter when an OTLP endpoint is configured. Problems are
    /// pushed to `warnings` and mean "no tracing", never a panic.
    pub(super) fn from_env(
        default_service_name: &'static str,
        warnings: &mut Vec<String>,
    ) -> Option<Self> {
        let endpoint = configured_endpoint()?;
        warnings.extend(sdk_env_warnings());
        let runtime = match export_runtime() {
            Ok(runtime) => runtime,
            Err(error) => {
                warnings.push(format!("OTLP trace export disabled: no runtime: {error}"));
                return None;
            }
        };
        let resource = resource(default_service_name);
        let service_name = resource
            .get(&Key::new(SERVICE_NAME))
            .map(|name| name.to_string())
            .unwrap_or_default();
        let handle = runtime.handle().clone();
        let built = OtlpExporter::new(&endpoint, handle, resource.clone(), warnings);
        let limits = super::batch::limits(|name| env::var(name).ok());
        let started = built.and_then(|exporter| {
            Batcher::start(exporter, limits).map_err(|e| format!("no export thread: {e}"))
        });
        let processor = match started {
            Ok(batcher) => super::finished::Shared::install(batcher),
            Err(error) => {
                warnings.push(format!("OTLP trace export disabled: {error}"));
                runtime.shutdown_background();
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        Some(Self {
            provider,
            runtime,
            endpoint,
            service_name,
        })
    }

    /// The bridge layer, restricted to our own targets so the exporter's
    /// tonic/hyper/h2 spans can never be exported (or export themselves).
    pub(super) fn layer<S>(&self) -> OtelLayer<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        otel_layer(self.provider.tracer(TRACER_NAME))
    }

    /// Makes the provider global so [`super::tracer`] uses it.
    pub(super) fn install_global(&self) {
        global::set_tracer_provider(self.provider.clone());
        super::server_span::install(self.provider.tracer(TRACER_NAME));
        tracing::info!(
            endpoint = %self.endpoint,
            service_name = %self.service_name,
            "exporting traces over OTLP/gRPC"
        );
    }

    /// Exports what is buffered, waiting at most `timeout`, then stops the exporter.
    pub(super) fn shutdown(self, timeout: std::time::Duration) {
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "trace export at shutdown failed; spans may be lost");
        }
        // Not a blocking drop: this may run inside the caller's runtime.
        self.runtime.shutdown_background();
    }
}

/// Bridges `tracing` spans to `tracer`; spans and events from other crates
/// (tonic, hyper, h2, tower, opentelemetry*) are filtered out. The filter
/// takes every level up to [`BRIDGED_LEVEL`], not the log filter's: our
/// per-request spans are `debug_span!`, so the log layer (`RUST_LOG=info`)
/// never formats them, yet they are exported.
pub(super) fn otel_layer<S>(tracer: SdkTracer) -> OtelLayer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let ours: fn(&Metadata<'_>) -> bool = is_ours;
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(ours).with_max_level_hint(BRIDGED_LEVEL))
}

/// The most verbose level bridged. Saying so keeps the process-wide level
/// at DEBUG (with `RUST_LOG=info`): without the hint it is TRACE, and every
/// `trace!` in h2, hyper and tokio's hot paths checks its callsite's
/// interest (about 32k instructions per message at K=100, issue 28).
const BRIDGED_LEVEL: LevelFilter = LevelFilter::DEBUG;

fn is_ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with(OUR_TARGETS) && *metadata.level() <= BRIDGED_LEVEL
}

/// The endpoint the exporter will use, if any (the traces-specific one wins,
/// as in the exporter itself).
fn configured_endpoint() -> Option<String> {
    [
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        OTEL_EXPORTER_OTLP_ENDPOINT,
    ]
    .into_iter()
    .find_map(|name| env::var_os(name).filter(|value| !value.is_empty()))
    .map(|value| value.to_string_lossy().into_owned())
}

fn export_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
}

/// The env resource plus our default name when the env names no service
/// (otherwise the SDK would report `unknown_service:<exe>`).
fn resource(default_service_name: &'static str) -> Resource {
    let builder = Resource::builder();
    if service_named_in_env() {
        builder.build()
    } else {
        builder.with_service_name(default_service_name).build()
    }
}

fn service_named_in_env() -> bool {
    let named = env::var_os(ENV_OTEL_SERVICE_NAME).is_some_and(|name| !name.is_empty());
    named
        || EnvResourceDetector::new()
            .detect()
            .get(&Key::new(SERVICE_NAME))
            .is_some()
}

/// What the SDK would ignore or replace without a visible trace.
fn sdk_env_warnings() -> Vec<String> {
    let mut warnings: Vec<String> = sampler_warning().into_iter().collect();
    for name in BSP_VARS {
        if let Ok(value) = env::var(name)
            && value.parse::<u64>().is_err()
        {
            warnings.push(format!(
                "{name}={value:?} is not a whole number; using the default"
            ));
        }
    }
    warnings
}

fn sampler_warning() -> Option<String> {
    let sampler = env::var(ENV_OTEL_TRACES_SAMPLER).ok()?;
    if !SAMPLERS.contains(&sampler.as_str()) {
        return Some(format!(
            "{ENV_OTEL_TRACES_SAMPLER}={sampler:?} is not supported; using parentbased_always_on"
        ));
    }
    let arg = env::var(ENV_OTEL_TRACES_SAMPLER_ARG).ok();
    let ratio_ok = arg.as_deref().is_some_and(|a| a.parse::<f64>().is_ok());
    (sampler.ends_with("traceidratio") && !ratio_ok).then(|| {
        format!("{ENV_OTEL_TRACES_SAMPLER_ARG}={arg:?} is not a number; sampling ratio 1.0")
    })
}
