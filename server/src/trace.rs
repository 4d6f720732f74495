//! Fan-out tracing, made with the OpenTelemetry API because a `deliver` span
//! needs an explicit start time (acceptance) and ends on another task.
//!
//! One [`FanoutTrace`] per message, only when the `SendMessage` span is
//! sampled. It holds the `fanout` PRODUCER span, which stays open until the
//! last subscriber queue releases the message; at that point it records the
//! count delivered and the maximum delivery latency. Each delivery makes a
//! `deliver` span (child of `fanout`, from acceptance to the write) until
//! `deliver_spans_max` is reached; past the cap only the aggregates grow.

use messenger_runtime::telemetry::{traceparent, tracer};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub struct FanoutTrace {
    /// Context whose span is `fanout`.
    cx: Context,
    /// Looked up once per message, not per delivery (the global lookup locks and allocates).
    tracer: BoxedTracer,
    accepted: SystemTime,
    delivered: AtomicU64,
    max_latency_nanos: AtomicU64,
    deliver_spans_max: u64,
}

impl FanoutTrace {
    /// Starts `fanout` under the current tracing span, if that span is sampled.
    pub fn start(deliver_spans_max: usize) -> Option<Arc<Self>> {
        let parent = tracing::Span::current().context();
        if !parent.span().span_context().is_sampled() {
            return None;
        }
        let tracer = tracer();
        let span = tracer
            .span_builder("fanout")
            .with_kind(SpanKind::Producer)
            .start_with_context(&tracer, &parent);
        Some(Arc::new(Self {
            cx: parent.with_span(span),
            tracer,
            accepted: SystemTime::now(),
            delivered: AtomicU64::new(0),
            max_latency_nanos: AtomicU64::new(0),
            deliver_spans_max: deliver_spans_max as u64,
        }))
    }

    /// W3C traceparent of `fanout`, kept with the message in history so a
    /// replay still continues the sender's trace.
    pub fn traceparent(&self) -> Option<String> {
        traceparent(&self.cx)
    }

    pub fn set_subscribers(&self, subscribers: usize) {
        self.cx
            .span()
            .set_attribute(KeyValue::new("messenger.subscribers", subscribers as i64));
    }

    /// Records one delivery. If `want_traceparent`, returns the traceparent
    /// the receiving client should continue from: its `deliver` span, or
    /// `fanout` past the cap.
    pub fn deliver(
        &self,
        subscriber_id: u64,
        latency: Duration,
        want_traceparent: bool,
    ) -> Option<String> {
        let n = self.delivered.fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.max_latency_nanos.fetch_max(nanos, Relaxed);
        if n >= self.deliver_spans_max {
            return want_traceparent.then(|| traceparent(&self.cx)).flatten();
        }
        let tracer = &self.tracer;
        let mut span = tracer
            .span_builder("deliver")
            .with_kind(SpanKind::Internal)
            .with_start_time(self.accepted)
            .with_attributes([
                KeyValue::new("messenger.subscriber_id", subscriber_id as i64),
                KeyValue::new("messenger.delivery_latency_seconds", latency.as_secs_f64()),
            ])
            .start_with_context(tracer, &self.cx);
        let traceparent = want_traceparent
            .then(|| {
                traceparent(&Context::new().with_remote_span_context(span.span_context().clone()))
            })
            .flatten();
        span.end();
        traceparent
    }
}

impl Drop for FanoutTrace {
    fn drop(&mut self) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "messenger.delivered",
            self.delivered.load(Relaxed) as i64,
        ));
        let max = Duration::from_nanos(self.max_latency_nanos.load(Relaxed));
        span.set_attribute(KeyValue::new(
            "messenger.max_delivery_latency_seconds",
            max.as_secs_f64(),
        ));
        span.end();
    }
}
