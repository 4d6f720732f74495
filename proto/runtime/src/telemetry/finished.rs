//! Spans made whole by the caller and handed straight to the batch span
//! processor, without the SDK's span machinery (sampler, span builder,
//! `Span` object, its lock and its end).
//!
//! For a span whose every field is known when it is made and whose parent
//! is a sampled span of ours: the server's `deliver` spans (up to
//! `MESSENGER_TRACE_DELIVER_SPANS_MAX` per sampled message, each made on the
//! task that delivers). Under a sampled parent, every sampler this SDK
//! offers samples the child too (parent-based ones by the parent, ratio
//! ones by the same trace id), so skipping the sampler changes nothing.
//!
//! Invariant: only spans reach the processor while OTLP export runs; with
//! no exporter, [`export_finished`] drops the span and returns `false`.

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, Span, SpanData, SpanProcessor,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The exporting processor, once OTLP export is installed.
static PROCESSOR: OnceLock<Arc<BatchSpanProcessor>> = OnceLock::new();

/// Hands `span` to the exporter's batch processor; `false` (span dropped)
/// when nothing exports.
pub fn export_finished(span: SpanData) -> bool {
    match PROCESSOR.get() {
        Some(processor) => {
            processor.on_end(span);
            true
        }
        None => false,
    }
}

/// A new random span id (the SDK's own generator).
pub fn new_span_id() -> SpanId {
    RandomIdGenerator::default().new_span_id()
}

/// The instrumentation scope of every span we make.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(super::traces::TRACER_NAME).build()
}

/// The provider's processor: the same [`BatchSpanProcessor`] that
/// [`export_finished`] feeds.
#[derive(Debug)]
pub(super) struct Shared(Arc<BatchSpanProcessor>);

impl Shared {
    /// Shares `processor` (its resource already set: the provider's call
    /// to [`SpanProcessor::set_resource`] cannot reach a shared one).
    pub(super) fn install(mut processor: BatchSpanProcessor, resource: &Resource) -> Self {
        processor.set_resource(resource);
        let shared = Arc::new(processor);
        // The first installation wins, as for the global provider.
        let _first = PROCESSOR.set(shared.clone());
        Self(shared)
    }
}

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}
