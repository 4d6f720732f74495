//! Spans made whole by the caller and handed straight to the batch span
//! processor ([`Batcher`]), without the SDK's span machinery (sampler, span
//! builder, `Span` object, its lock and its end); and that processor's place
//! in the tracer provider ([`Shared`]).
//!
//! For a span whose every field is known when it is made and whose parent
//! is a sampled span of ours: the server's `deliver` spans (up to
//! `MESSENGER_TRACE_DELIVER_SPANS_MAX` per sampled message, each made on the
//! task that delivers). Under a sampled parent, every sampler this SDK
//! offers samples the child too (parent-based ones by the parent, ratio
//! ones by the same trace id), so skipping the sampler changes nothing.
//!
//! Such a span is a [`ChildSpan`]: a few fixed fields, no `SpanData`, no
//! allocation. It is queued as it is and encoded from its fields; its
//! [`ChildSpan::to_span_data`] is the SDK span it stands for (the encoder's
//! tests check that both give the same bytes).
//!
//! Invariant: only spans reach the processor while OTLP export runs; with
//! no exporter, [`export_finished`] drops the span and returns `false`.

use super::processor::Batcher;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Span, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime};

/// The exporting processor, once OTLP export is installed.
static PROCESSOR: OnceLock<Arc<Batcher>> = OnceLock::new();

/// Our instrumentation scope, for the spans queued without one.
static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(scope);

/// A finished INTERNAL child of one of our sampled spans, whole when it is
/// made: two attributes, status unset, no events or links, our scope.
#[derive(Debug, Clone)]
pub struct ChildSpan {
    /// Its parent; the child shares its trace id, flags and trace state.
    pub parent: SpanContext,
    pub span_id: SpanId,
    pub name: &'static str,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: [KeyValue; 2],
}

impl ChildSpan {
    /// Its own span context.
    pub fn span_context(&self) -> SpanContext {
        let parent = &self.parent;
        SpanContext::new(
            parent.trace_id(),
            self.span_id,
            parent.trace_flags(),
            false,
            parent.trace_state().clone(),
        )
    }

    /// The SDK span this stands for.
    pub fn to_span_data(&self) -> SpanData {
        SpanData {
            span_context: self.span_context(),
            parent_span_id: self.parent.span_id(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(self.name),
            start_time: self.start,
            end_time: self.end,
            attributes: self.attributes.to_vec(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: SCOPE.clone(),
        }
    }
}

/// What the processor queues: a span the SDK ended, or one of ours.
///
/// The child is the common case (16 of 18 spans of a sampled message at
/// K=100) and is queued unboxed, with no allocation; the SDK's data, far
/// larger, is boxed so that it does not set the size every child is copied at.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Finished {
    Sdk(Box<SpanData>),
    Child(ChildSpan),
}

impl Finished {
    pub(super) fn scope(&self) -> &InstrumentationScope {
        match self {
            Self::Sdk(span) => &span.instrumentation_scope,
            Self::Child(_) => &SCOPE,
        }
    }
}

/// Hands `span` to the exporter's batch processor; `false` (span dropped)
/// when nothing exports.
pub fn export_finished(span: ChildSpan) -> bool {
    match PROCESSOR.get() {
        Some(processor) => {
            processor.push(Finished::Child(span));
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

/// The provider's processor: the same [`Batcher`] that [`export_finished`]
/// feeds.
#[derive(Debug)]
pub(super) struct Shared(Arc<Batcher>);

impl Shared {
    /// Shares `processor` (its exporter already holds the resource).
    pub(super) fn install(processor: Batcher) -> Self {
        let shared = Arc::new(processor);
        // The first installation wins, as for the global provider.
        let _first = PROCESSOR.set(shared.clone());
        Self(shared)
    }
}

impl SpanProcessor for Shared {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.push(Finished::Sdk(Box::new(span)));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }
}
