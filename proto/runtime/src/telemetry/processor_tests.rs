//! The processor's semantics against a collecting exporter: when an export
//! starts, what it carries, flush, shutdown and the bounded queue.

use super::*;
use crate::telemetry::finished::ChildSpan;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::SystemTime;

/// Long enough that an export in a test never comes from the delay, unless
/// the test sets a short one.
const NEVER: Duration = Duration::from_secs(3600);
/// Bound on every wait for the export thread.
const WAIT: Duration = Duration::from_secs(10);

/// Span `n`: from the SDK when even, one of our children when odd.
fn span(n: u64) -> Finished {
    let data = SpanData {
        span_context: SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(n + 1),
            TraceFlags::SAMPLED,
            false,
            Default::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed("deliver"),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    };
    if n.is_multiple_of(2) {
        return Finished::Sdk(Box::new(data));
    }
    Finished::Child(ChildSpan {
        parent: data.span_context,
        span_id: SpanId::from(n + 1),
        name: "deliver",
        start: data.start_time,
        end: data.end_time,
        attributes: [KeyValue::new("a", 1i64), KeyValue::new("b", 2.0)],
    })
}

/// Sends each batch's span numbers; with a gate, each export first says it
/// started, then waits for the test to let it finish.
struct Collector {
    batches: Sender<Vec<u64>>,
    gate: Option<(Sender<()>, Receiver<()>)>,
    fail: bool,
}

/// A span's number (its id minus one).
fn number(span: &Finished) -> u64 {
    let id = match span {
        Finished::Sdk(span) => span.span_context.span_id(),
        Finished::Child(span) => span.span_id,
    };
    u64::from_be_bytes(id.to_bytes()) - 1
}

impl Export for Collector {
    fn export(&mut self, spans: &[Finished]) -> OTelSdkResult {
        if let Some((started, release)) = &self.gate {
            started.send(()).expect("test listens");
            release
                .recv_timeout(WAIT)
                .expect("test releases the export");
        }
        let numbers = spans.iter().map(number).collect();
        self.batches.send(numbers).expect("test listens");
        if self.fail {
            return Err(OTelSdkError::InternalFailure("collector down".into()));
        }
        Ok(())
    }
}

fn start(max_queue: usize, max_batch: usize, delay: Duration) -> (Batcher, Receiver<Vec<u64>>) {
    let (batches, received) = channel();
    let collector = Collector {
        batches,
        gate: None,
        fail: false,
    };
    let limits = Limits {
        max_queue,
        max_batch,
        delay,
    };
    (Batcher::start(collector, limits).expect("thread"), received)
}

fn end(batcher: &Batcher, numbers: std::ops::Range<u64>) {
    numbers.for_each(|n| batcher.push(span(n)));
}

#[test]
fn a_full_batch_is_exported_without_waiting_for_the_delay() {
    let (batcher, batches) = start(100, 4, NEVER);
    end(&batcher, 0..4);
    assert_eq!(batches.recv_timeout(WAIT).unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn the_delay_exports_a_partial_batch() {
    let (batcher, batches) = start(100, 50, Duration::from_millis(20));
    end(&batcher, 0..3);
    // A delay may end while the spans are being queued: then two exports.
    let mut exported = Vec::new();
    while exported.len() < 3 {
        exported.extend(
            batches
                .recv_timeout(WAIT)
                .expect("an export within the delay"),
        );
    }
    assert_eq!(exported, vec![0, 1, 2]);
}

#[test]
fn a_flush_exports_everything_queued_in_batches_in_order() {
    let (batcher, batches) = start(100, 2, NEVER);
    end(&batcher, 0..1);
    batcher.force_flush().expect("flushed");
    assert_eq!(batches.try_recv().unwrap(), vec![0]);
    // 5 spans at 2 a batch: the full batches may leave before the flush.
    end(&batcher, 1..6);
    batcher.force_flush().expect("flushed");
    let sent: Vec<Vec<u64>> = batches.try_iter().collect();
    assert_eq!(sent, vec![vec![1, 2], vec![3, 4], vec![5]]);
}

#[test]
fn a_full_queue_drops_and_counts_the_extra_spans() {
    let (batches, received) = channel();
    let (started, started_rx) = channel();
    let (release, release_rx) = channel();
    let collector = Collector {
        batches,
        gate: Some((started, release_rx)),
        fail: false,
    };
    let limits = Limits {
        max_queue: 3,
        max_batch: 3,
        delay: NEVER,
    };
    let batcher = Batcher::start(collector, limits).expect("thread");
    end(&batcher, 0..3);
    started_rx
        .recv_timeout(WAIT)
        .expect("the full batch is exporting");
    // The thread holds 0..3; the queue takes 3 more and drops the rest.
    end(&batcher, 3..8);
    assert_eq!(batcher.dropped(), 2);
    release.send(()).unwrap();
    assert_eq!(received.recv_timeout(WAIT).unwrap(), vec![0, 1, 2]);
    release.send(()).unwrap();
    assert_eq!(received.recv_timeout(WAIT).unwrap(), vec![3, 4, 5]);
}

#[test]
fn shutdown_exports_what_is_queued_then_drops_later_spans() {
    let (batcher, batches) = start(100, 50, NEVER);
    end(&batcher, 0..3);
    batcher.shutdown(WAIT).expect("clean shutdown");
    assert_eq!(batches.try_recv().unwrap(), vec![0, 1, 2]);
    end(&batcher, 3..4);
    assert!(matches!(
        batcher.shutdown(WAIT),
        Err(OTelSdkError::AlreadyShutdown)
    ));
    assert!(matches!(
        batcher.force_flush(),
        Err(OTelSdkError::AlreadyShutdown)
    ));
    assert!(batches.try_recv().is_err(), "nothing after shutdown");
}

#[test]
fn a_failed_export_is_reported_to_the_flush() {
    let (batches, received) = channel();
    let collector = Collector {
        batches,
        gate: None,
        fail: true,
    };
    let limits = Limits {
        max_queue: 10,
        max_batch: 10,
        delay: NEVER,
    };
    let batcher = Batcher::start(collector, limits).expect("thread");
    end(&batcher, 0..2);
    let error = batcher.force_flush().expect_err("the export failed");
    assert!(error.to_string().contains("collector down"), "{error}");
    assert_eq!(received.try_recv().unwrap(), vec![0, 1]);
}
