//! One streamed `ServerMessageResponse` into the buffer.
//!
//! Invariants: a message is never lost for a bad field (a missing or invalid
//! sendTime becomes the epoch, with a warning); every message counts in
//! `messenger_client_received_total` and, when it has a sendTime, in the
//! end-to-end latency histogram; a message with a valid `traceparent` (read
//! strictly, W3C) is buffered inside a CONSUMER `receive` span continuing the
//! sender's trace, with the sender's context current.

use crate::buffer::{Buffer, BufferedMessage};
use crate::metrics::Metrics;
use messenger_proto::pb::ServerMessageResponse;
use messenger_proto::time::{format_rfc3339, from_timestamp, unix_nanos_now};
use messenger_runtime::telemetry::{context_from_traceparent, traceparent};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Placeholder for a message whose sendTime is missing or invalid (only a
/// non-conforming server sends one); the message is kept, not lost.
const INVALID_SEND_TIME: &str = "1970-01-01T00:00:00.000000000Z";

/// A streamed message as `/getAndFlushMessages` returns it; never fails (a
/// missing or invalid sendTime becomes the epoch, with a warning).
pub fn to_buffered(m: ServerMessageResponse) -> BufferedMessage {
    let send_time = m.send_time.as_ref().and_then(format_rfc3339);
    if send_time.is_none() {
        tracing::warn!("message without a valid sendTime from server; keeping it with the epoch");
    }
    BufferedMessage {
        author: m.author,
        text: m.text,
        send_time: send_time.unwrap_or_else(|| INVALID_SEND_TIME.to_owned()),
    }
}

/// Buffers one streamed message, with its metrics and, when the server sent a
/// valid traceparent (parsed strictly; anything else is ignored), a CONSUMER
/// `receive` span continuing the sender's trace (`messenger.replayed=true`
/// for a message from the server's history). The sender's context is also
/// current while the message is buffered, so log lines there carry its trace
/// id even when this client records nothing; a debug line names it.
pub(super) fn receive(
    m: ServerMessageResponse,
    buffer: &Buffer,
    metrics: &Metrics,
    replayed: bool,
) {
    metrics.received.increment(1);
    if let Some(ts) = &m.send_time {
        let age_nanos = unix_nanos_now() - from_timestamp(ts);
        metrics.end_to_end.record(age_nanos.max(0) as f64 / 1e9);
    }
    let sender = context_from_traceparent(&m.traceparent);
    let parent = traceparent(&sender);
    let message = to_buffered(m);
    let Some(parent) = parent else {
        tracing::debug!(send_time = %message.send_time, "message received");
        return buffer.push(message);
    };
    let span = tracing::debug_span!(
        "receive",
        otel.kind = "consumer",
        messenger.replayed = tracing::field::Empty
    );
    if replayed {
        span.record("messenger.replayed", true);
    }
    let _ = span.set_parent(sender.clone());
    let _sender = sender.attach();
    span.in_scope(|| {
        tracing::debug!(send_time = %message.send_time, traceparent = %parent, "message received");
        buffer.push(message)
    });
}
