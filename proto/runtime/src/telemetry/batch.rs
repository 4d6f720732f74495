//! Sizing and timing of the batch span processor ([`super::processor`]) that
//! feeds the OTLP exporter, from the SDK's standard `OTEL_BSP_*` variables.
//!
//! The SDK's defaults (a 2,048-span queue, 512-span exports) suit a service
//! that makes a few spans per request. A traced message here makes up to
//! `MESSENGER_TRACE_DELIVER_SPANS_MAX + 2` spans. With 64 `deliver` spans
//! at K = 100 subscribers, the SDK's queue held about 30 messages' worth: at
//! 1,300 messages/s it overflowed and dropped about 45% of the spans, and
//! each export carried the request overhead (HTTP/2 headers, a round trip, a
//! wake-up of the processor thread and of the collector) for only 512 spans.
//!
//! Invariants:
//! - `OTEL_BSP_MAX_QUEUE_SIZE` and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, when set
//!   to a whole number, win; otherwise [`DEFAULT_BSP_MAX_QUEUE_SIZE`] and
//!   [`DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE`] apply (a value that is not a
//!   whole number is ignored, as the SDK ignores it, and warned about by
//!   `traces`).
//! - The batch never exceeds the queue (the SDK clamps it the same way) and
//!   holds at least one span.
//! - `OTEL_BSP_SCHEDULE_DELAY` (milliseconds) likewise, else
//!   [`DEFAULT_BSP_SCHEDULE_DELAY`] (the SDK's default).
//! - `OTEL_BSP_EXPORT_TIMEOUT` and `OTEL_BSP_MAX_CONCURRENT_EXPORTS` have no
//!   effect, as with the SDK's thread-based processor: one export at a time,
//!   bounded by the exporter's own timeout.

use super::processor::Limits;
use std::time::Duration;

/// The OpenTelemetry SDK environment variables sized here
/// (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#batch-span-processor>).
pub const ENV_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
pub const ENV_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// The longest a span waits for its batch, in milliseconds.
pub const ENV_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";

/// Spans buffered before new ones are dropped: about 250 traced messages at
/// K >= 64, a few MiB at most (a `deliver` span's data is ~200 bytes).
pub const DEFAULT_BSP_MAX_QUEUE_SIZE: usize = 16_384;

/// Spans per export request: about 0.5 MB of OTLP protobuf, well under the
/// 4 MiB a gRPC server (and the OpenTelemetry Collector) accepts by default.
pub const DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE: usize = 4_096;

/// The SDK's default delay between scheduled exports.
pub const DEFAULT_BSP_SCHEDULE_DELAY: Duration = Duration::from_millis(5_000);

/// The processor's limits, reading the environment through `var`.
pub(super) fn limits(var: impl Fn(&str) -> Option<String>) -> Limits {
    let (max_queue, max_batch) = sizes(&var);
    let delay = var(ENV_BSP_SCHEDULE_DELAY)
        .and_then(|value| value.parse::<u64>().ok())
        .map_or(DEFAULT_BSP_SCHEDULE_DELAY, Duration::from_millis);
    Limits {
        max_queue,
        max_batch,
        delay,
    }
}

/// `(max_queue_size, max_export_batch_size)`, the batch clamped to the
/// queue and to at least one span.
fn sizes(var: impl Fn(&str) -> Option<String>) -> (usize, usize) {
    let whole = |name: &str| var(name).and_then(|value| value.parse::<usize>().ok());
    let queue = whole(ENV_BSP_MAX_QUEUE_SIZE).unwrap_or(DEFAULT_BSP_MAX_QUEUE_SIZE);
    let batch = whole(ENV_BSP_MAX_EXPORT_BATCH_SIZE).unwrap_or(DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE);
    (queue, batch.min(queue).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn our_defaults_when_unset_or_not_a_number() {
        let ours = (
            DEFAULT_BSP_MAX_QUEUE_SIZE,
            DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE,
        );
        assert_eq!(sizes(env(&[])), ours);
        let junk = [
            (ENV_BSP_MAX_QUEUE_SIZE, "lots"),
            (ENV_BSP_MAX_EXPORT_BATCH_SIZE, "-1"),
        ];
        assert_eq!(sizes(env(&junk)), ours);
    }

    #[test]
    fn the_environment_wins_each_on_its_own() {
        let batch = [(ENV_BSP_MAX_EXPORT_BATCH_SIZE, "512")];
        assert_eq!(sizes(env(&batch)), (DEFAULT_BSP_MAX_QUEUE_SIZE, 512));
        // Above the SDK's default queue (2,048) too: our queue is the bound.
        let batch = [(ENV_BSP_MAX_EXPORT_BATCH_SIZE, "8192")];
        assert_eq!(sizes(env(&batch)), (DEFAULT_BSP_MAX_QUEUE_SIZE, 8192));
        let queue = [(ENV_BSP_MAX_QUEUE_SIZE, "100000")];
        assert_eq!(
            sizes(env(&queue)),
            (100_000, DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE)
        );
    }

    #[test]
    fn the_batch_never_exceeds_the_queue() {
        let small = [(ENV_BSP_MAX_QUEUE_SIZE, "1000")];
        assert_eq!(sizes(env(&small)), (1000, 1000));
        let both = [
            (ENV_BSP_MAX_QUEUE_SIZE, "100"),
            (ENV_BSP_MAX_EXPORT_BATCH_SIZE, "200"),
        ];
        assert_eq!(sizes(env(&both)), (100, 100));
        let zero = [(ENV_BSP_MAX_EXPORT_BATCH_SIZE, "0")];
        assert_eq!(sizes(env(&zero)), (DEFAULT_BSP_MAX_QUEUE_SIZE, 1));
    }

    #[test]
    fn the_delay_is_read_in_milliseconds_or_defaults() {
        assert_eq!(limits(env(&[])).delay, DEFAULT_BSP_SCHEDULE_DELAY);
        let delay = [(ENV_BSP_SCHEDULE_DELAY, "250")];
        assert_eq!(limits(env(&delay)).delay, Duration::from_millis(250));
        let junk = [(ENV_BSP_SCHEDULE_DELAY, "soon")];
        assert_eq!(limits(env(&junk)).delay, DEFAULT_BSP_SCHEDULE_DELAY);
    }
}
