//! The broker hop's spans, named and attributed by OpenTelemetry's messaging
//! semantic conventions (`messaging.system`, `messaging.destination.name`,
//! `messaging.operation.type`, `messaging.message.id`).

use super::{FanoutTrace, records_under};
use messenger_runtime::telemetry::{context_from_traceparent, outgoing, traceparent, tracer};
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::sync::Arc;

/// `messaging.system` of the broker spans (OpenTelemetry messaging conventions).
const MESSAGING_SYSTEM: &str = "redis";

fn messaging(stream: &str, operation: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("messaging.system", MESSAGING_SYSTEM),
        KeyValue::new("messaging.destination.name", stream.to_owned()),
        KeyValue::new("messaging.operation.type", operation),
    ]
}

/// The `broker.publish` span (PRODUCER) of one send through Redis, under the
/// current `SendMessage` span, and the `traceparent` the entry carries to
/// every replica: this span's when recorded, else the caller's as
/// forwarded. Ends when dropped.
pub(crate) struct PublishTrace {
    cx: Option<Context>,
    traceparent: Option<String>,
}

impl PublishTrace {
    pub(crate) fn start(stream: &str) -> Self {
        let parent = Context::current();
        if !records_under(&parent) {
            return Self {
                cx: None,
                traceparent: traceparent(&outgoing(&parent)),
            };
        }
        let tracer = tracer();
        let span = tracer
            .span_builder("broker.publish")
            .with_kind(SpanKind::Producer)
            .with_attributes(messaging(stream, "send"))
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        Self {
            traceparent: traceparent(&cx),
            cx: Some(cx),
        }
    }

    pub(crate) fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Records the entry's id and offset, or the failure.
    pub(crate) fn finish(&self, outcome: Result<(&str, u64), &str>) {
        let Some(cx) = &self.cx else { return };
        let span = cx.span();
        match outcome {
            Ok((id, offset)) => {
                span.set_attribute(KeyValue::new("messaging.message.id", id.to_owned()));
                span.set_attribute(KeyValue::new("messenger.offset", offset as i64));
            }
            Err(e) => span.set_status(opentelemetry::trace::Status::error(e.to_owned())),
        }
    }
}

impl Drop for PublishTrace {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// One replica's `broker.receive` span (CONSUMER) of one entry, continuing
/// the sender's trace from the entry's `traceparent`; ends when dropped.
pub(crate) struct ReceiveTrace {
    cx: Context,
    traceparent: String,
    recorded: bool,
}

impl ReceiveTrace {
    /// `None` when the entry carries no valid `traceparent`.
    pub(crate) fn start(traceparent: &str, stream: &str, id: &str, offset: u64) -> Option<Self> {
        let parent = context_from_traceparent(traceparent);
        if !parent.span().span_context().is_valid() {
            return None;
        }
        let tracer = tracer();
        let span = tracer
            .span_builder("broker.receive")
            .with_kind(SpanKind::Consumer)
            .with_attributes(messaging(stream, "receive").into_iter().chain([
                KeyValue::new("messaging.message.id", id.to_owned()),
                KeyValue::new("messenger.offset", offset as i64),
            ]))
            .start_with_context(&tracer, &parent);
        let own = span.span_context();
        // Without an exporter (or unsampled) the span is the remote parent itself.
        let recorded = own.is_sampled() && !own.is_remote();
        Some(Self {
            cx: parent.with_span(span),
            traceparent: traceparent.to_owned(),
            recorded,
        })
    }

    /// The `fanout` of this entry on this replica: under `broker.receive`
    /// when recorded, else forwarding the entry's `traceparent`.
    pub(crate) fn fanout(&self, deliver_spans_max: usize) -> Arc<FanoutTrace> {
        if self.recorded {
            FanoutTrace::recorded(self.cx.clone(), deliver_spans_max)
        } else {
            FanoutTrace::forwarded(self.traceparent.clone())
        }
    }
}

impl Drop for ReceiveTrace {
    fn drop(&mut self) {
        if self.recorded {
            self.cx.span().end();
        }
    }
}
