//! The trace context of one accepted message, handed to every subscriber
//! that asked for it (`messenger-trace-context: 1`).
//!
//! Two modes, decided once per message by [`FanoutTrace::start`]:
//! - **Recorded**, when the `SendMessage` span is sampled (this process
//!   exports): a `fanout` PRODUCER span, made with the OpenTelemetry API
//!   because a `deliver` span needs an explicit start time (acceptance) and
//!   ends on another task. `fanout` stays open until the last subscriber
//!   queue releases the message; at that point it records the count delivered
//!   and the maximum delivery latency. Each delivery makes a `deliver` span
//!   (child of `fanout`, from acceptance to the write) until
//!   `deliver_spans_max` is reached; receivers continue from their `deliver`
//!   span, or from `fanout` past the cap. A `deliver` span is made whole on
//!   the delivering task (ids, times, two attributes) as a [`ChildSpan`] and
//!   handed straight to the exporter's batch processor ([`export_finished`]):
//!   no sampler (its parent `fanout` is sampled), no SDK span object, no
//!   context, no allocation.
//! - **Forwarded**, otherwise (no exporter, or the sender's flags are `00`):
//!   every receiver gets the sender's `traceparent` unchanged, sampled flag
//!   included, as W3C Trace Context asks of a participant that does not
//!   record. Nothing is recorded.
//!
//! A message whose sender sent no valid context, on a server that records
//! nothing, carries no trace at all.
//!
//! With the Redis engine ([`broker`]), `SendMessage` records `broker.publish`
//! (PRODUCER) instead of `fanout`, and every replica's reader continues the
//! trace from the entry's `traceparent` with `broker.receive` (CONSUMER),
//! under which that replica's `fanout` runs as above.

mod broker;

pub(crate) use broker::{PublishTrace, ReceiveTrace};

use crate::core::hub::MessageTrace;
use messenger_runtime::telemetry::w3c::TraceParent;
use messenger_runtime::telemetry::{
    ChildSpan, export_finished, new_span_id, outgoing, traceparent, tracer,
};
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// `repr(C)`: the two counters every delivery writes come first, next to
/// the `Arc`'s own counts, which the same delivery writes when it drops its
/// share. Deliveries run on every worker, so that cache line moves between
/// cores once per delivery instead of once for the `Arc` and once more for
/// the counters behind the `Box` (issue 28: the counters' line was 60% of
/// `deliver`'s samples).
#[repr(C)]
pub(crate) struct FanoutTrace {
    /// Deliveries recorded; only a recorded trace counts them.
    delivered: AtomicU64,
    /// The longest of them, in nanoseconds.
    max_latency_nanos: AtomicU64,
    mode: Mode,
}

enum Mode {
    /// Boxed: far larger than a forwarded `traceparent`.
    Recorded(Box<Recorded>),
    /// The sender's `traceparent`, passed on as it came.
    Forwarded(String),
}

struct Recorded {
    /// Context whose span is `fanout`.
    cx: Context,
    /// `fanout`'s traceparent, formatted once: history keeps it, and every
    /// receiver past the cap continues from it.
    fanout_traceparent: Option<String>,
    /// `fanout`'s span context: the parent of every `deliver` span.
    fanout: SpanContext,
    accepted: SystemTime,
    deliver_spans_max: u64,
}

/// `true` when `parent`'s span is ours and sampled, so spans under it are
/// recorded; a caller's (remote) span is only passed on.
pub(crate) fn records_under(parent: &Context) -> bool {
    let span = parent.span();
    let own = span.span_context();
    own.is_sampled() && !own.is_remote()
}

impl FanoutTrace {
    /// Under the current context's span (`SendMessage`): recorded when that span is
    /// sampled, else forwarding the caller's context (or our own unsampled
    /// one when the caller sent none); `None` when there is no context.
    pub(crate) fn start(deliver_spans_max: usize) -> Option<Arc<Self>> {
        let parent = Context::current();
        if !records_under(&parent) {
            let forwarded = traceparent(&outgoing(&parent))?;
            return Some(Self::forwarded(forwarded));
        }
        Some(Self::recorded(parent, deliver_spans_max))
    }

    /// Recorded, under `parent` (a sampled span of ours).
    fn recorded(parent: Context, deliver_spans_max: usize) -> Arc<Self> {
        let tracer = tracer();
        let span = tracer
            .span_builder("fanout")
            .with_kind(SpanKind::Producer)
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        Arc::new(Self::with(Mode::Recorded(Box::new(Recorded {
            fanout_traceparent: traceparent(&cx),
            fanout: cx.span().span_context().clone(),
            cx,
            accepted: SystemTime::now(),
            deliver_spans_max: deliver_spans_max as u64,
        }))))
    }

    /// Forwarding `traceparent` as it came.
    fn forwarded(traceparent: String) -> Arc<Self> {
        Arc::new(Self::with(Mode::Forwarded(traceparent)))
    }

    fn with(mode: Mode) -> Self {
        Self {
            delivered: AtomicU64::new(0),
            max_latency_nanos: AtomicU64::new(0),
            mode,
        }
    }

    /// W3C traceparent kept with the message in history so a replay still
    /// continues the sender's trace: `fanout`'s when recorded, else the
    /// sender's as forwarded.
    pub(crate) fn traceparent(&self) -> Option<String> {
        match &self.mode {
            Mode::Recorded(recorded) => recorded.fanout_traceparent.clone(),
            Mode::Forwarded(forwarded) => Some(forwarded.clone()),
        }
    }

    pub(crate) fn set_subscribers(&self, subscribers: usize) {
        if let Mode::Recorded(recorded) = &self.mode {
            recorded
                .cx
                .span()
                .set_attribute(KeyValue::new("messenger.subscribers", subscribers as i64));
        }
    }

    /// Records one delivery. If `want_traceparent`, returns the traceparent
    /// the receiving client should continue from.
    pub(crate) fn deliver(
        &self,
        subscriber_id: u64,
        latency: Duration,
        want_traceparent: bool,
    ) -> Option<String> {
        match &self.mode {
            Mode::Recorded(recorded) => {
                let n = self.delivered.fetch_add(1, Relaxed);
                let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.max_latency_nanos.fetch_max(nanos, Relaxed);
                recorded.deliver(n, subscriber_id, latency, want_traceparent)
            }
            Mode::Forwarded(traceparent) => want_traceparent.then(|| traceparent.clone()),
        }
    }
}

/// What the hub carries with a live message: this trace, opaque to it.
impl MessageTrace for FanoutTrace {
    fn traceparent(&self) -> Option<String> {
        FanoutTrace::traceparent(self)
    }

    fn deliver(
        &self,
        subscriber: u64,
        latency: Duration,
        want_traceparent: bool,
    ) -> Option<String> {
        FanoutTrace::deliver(self, subscriber, latency, want_traceparent)
    }

    fn records(&self) -> bool {
        matches!(self.mode, Mode::Recorded(_))
    }
}

impl Recorded {
    /// The `n`th delivery's `deliver` span, or `fanout` past the cap.
    fn deliver(
        &self,
        n: u64,
        subscriber_id: u64,
        latency: Duration,
        want_traceparent: bool,
    ) -> Option<String> {
        if n >= self.deliver_spans_max {
            return want_traceparent
                .then(|| self.fanout_traceparent.clone())
                .flatten();
        }
        let span = ChildSpan {
            parent: self.fanout.clone(),
            span_id: new_span_id(),
            name: "deliver",
            start: self.accepted,
            end: SystemTime::now(),
            attributes: [
                KeyValue::new("messenger.subscriber_id", subscriber_id as i64),
                KeyValue::new("messenger.delivery_latency_seconds", latency.as_secs_f64()),
            ],
        };
        let traceparent = want_traceparent.then(|| {
            TraceParent {
                trace_id: span.parent.trace_id(),
                parent_id: span.span_id,
                sampled: span.parent.is_sampled(),
            }
            .to_string()
        });
        export_finished(span);
        traceparent
    }
}

/// The last share is gone (every queue released the message): `fanout` ends.
impl Drop for FanoutTrace {
    fn drop(&mut self) {
        let Mode::Recorded(recorded) = &self.mode else {
            return;
        };
        let span = recorded.cx.span();
        span.set_attribute(KeyValue::new(
            "messenger.delivered",
            *self.delivered.get_mut() as i64,
        ));
        let max = Duration::from_nanos(*self.max_latency_nanos.get_mut());
        span.set_attribute(KeyValue::new(
            "messenger.max_delivery_latency_seconds",
            max.as_secs_f64(),
        ));
        span.end();
    }
}
