//! The Redis engine's series (issue 14; the names are shared with the
//! dashboards and alerts). Registered only when `MESSENGER_BROKER_URL` is set,
//! so an in-process server exports no `messenger_broker_up 0` to alert on.

use messenger_runtime::metrics::exponential_buckets;
use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use std::sync::LazyLock;

pub(super) const BROKER_UP: &str = "messenger_broker_up";
pub(crate) const BROKER_PUBLISH: &str = "messenger_broker_publish_seconds";
pub(crate) const BROKER_PUBLISH_BATCH: &str = "messenger_broker_publish_batch_messages";
pub(crate) const BROKER_READ_LAG: &str = "messenger_broker_read_lag_seconds";
pub(super) const BROKER_ERRORS: &str = "messenger_broker_errors_total";
pub(super) const BROKER_REFUSALS: &str = "messenger_broker_refusals_total";
pub(super) const BROKER_ROOM_MADE: &str = "messenger_broker_room_made_total";
pub(super) const BROKER_WAIT_TIMEOUTS: &str = "messenger_broker_wait_timeouts_total";
pub(super) const BROKER_FAILOVERS: &str = "messenger_broker_failovers_total";
pub(super) const BROKER_FAILOVER_PAUSES: &str = "messenger_broker_failover_pauses_total";
pub(super) const BROKER_PRIMARY_INFO: &str = "messenger_broker_primary_info";
pub(super) const BROKER_READER_STALLS: &str = "messenger_broker_reader_stalls_total";

/// 50 µs .. ~3 s: one script round trip.
pub(super) static PUBLISH_BUCKETS: LazyLock<Vec<f64>> =
    LazyLock::new(|| exponential_buckets(5e-5, 2.0, 17));
/// 1 .. 128 messages: one publish script call (`script::BATCH_MAX`).
pub(super) static PUBLISH_BATCH_BUCKETS: LazyLock<Vec<f64>> =
    LazyLock::new(|| exponential_buckets(1.0, 2.0, 8));
/// 100 µs .. ~6.5 s: `sendTime` (Redis clock) to this replica's reader.
pub(super) static READ_LAG_BUCKETS: LazyLock<Vec<f64>> =
    LazyLock::new(|| exponential_buckets(1e-4, 2.0, 17));

/// What failed, as the `op` label of [`BROKER_ERRORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerOp {
    /// The publish script (or the wait for this replica's delivery).
    Publish,
    /// The reader's `XREAD` or its connection.
    Read,
    /// Loading the epoch and the stream's tail.
    Load,
    /// An entry that is not one of ours (skipped).
    Decode,
}

impl BrokerOp {
    const ALL: [Self; 4] = [Self::Publish, Self::Read, Self::Load, Self::Decode];
    fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Read => "read",
            Self::Load => "load",
            Self::Decode => "decode",
        }
    }
}

/// Cached handles to the broker series.
pub(crate) struct BrokerMetrics {
    pub up: Gauge,
    pub publish: Histogram,
    pub publish_batch: Histogram,
    pub read_lag: Histogram,
    errors: [Counter; 4],
    room_made: Counter,
    wait_timeouts: Counter,
    failovers: Counter,
    failover_pauses: Counter,
    reader_stalls: Counter,
}

impl BrokerMetrics {
    /// Describes and registers every series (`up` at 0, errors at 0).
    pub(crate) fn new() -> Self {
        describe_gauge!(
            BROKER_UP,
            "1 while this replica's reader is connected to the broker and reading (and, with Sentinel, no failover pauses its sends), else 0."
        );
        describe_histogram!(
            BROKER_PUBLISH,
            metrics::Unit::Seconds,
            "Per message: from SendMessage queueing it until its publish script call (stamp, XADD, trim) answered."
        );
        describe_histogram!(
            BROKER_PUBLISH_BATCH,
            metrics::Unit::Count,
            "Messages per publish script call: concurrent sends on a replica share one call (group commit)."
        );
        describe_histogram!(
            BROKER_READ_LAG,
            metrics::Unit::Seconds,
            "Per live entry (not the tail loaded at start): its sendTime (the broker's clock) until this replica's reader has it."
        );
        describe_counter!(
            BROKER_ERRORS,
            "Broker failures, by op (publish|read|load|decode)."
        );
        describe_counter!(
            BROKER_REFUSALS,
            "Writes the broker refused for a reason a resend cannot fix, by reason \
             (oom|auth|noperm|wrongtype|noscript|readonly|misconf); messenger_broker_up is 0 while it refuses."
        );
        describe_counter!(
            BROKER_ROOM_MADE,
            "Times this replica trimmed the stream because Redis was out of memory (maxmemory)."
        );
        describe_counter!(
            BROKER_WAIT_TIMEOUTS,
            "Batches stored on the primary that fewer replicas than MESSENGER_BROKER_MIN_REPLICAS confirmed in time (WAIT); their sends answered UNAVAILABLE, outcome unknown."
        );
        describe_counter!(
            BROKER_FAILOVERS,
            "Primary changes this replica followed (Sentinel): each time the Sentinels named another primary than the one in use."
        );
        describe_counter!(
            BROKER_FAILOVER_PAUSES,
            "Times this replica paused its sends because a Sentinel announced a failover of its primary (+try-failover and the steps after it): sends answered UNAVAILABLE, not sent, and messenger_broker_up was 0 until the new primary was in use."
        );
        describe_gauge!(
            BROKER_PRIMARY_INFO,
            "1 for the Redis primary this replica uses (Sentinel), by server_address and server_port; 0 for one it used before."
        );
        describe_counter!(
            BROKER_READER_STALLS,
            "Times this replica's reader got no answer within twice MESSENGER_BROKER_TIMEOUT_MS (a wedged connection) and turned the replica NOT_SERVING."
        );
        let metrics = Self {
            up: gauge!(BROKER_UP),
            publish: histogram!(BROKER_PUBLISH),
            publish_batch: histogram!(BROKER_PUBLISH_BATCH),
            read_lag: histogram!(BROKER_READ_LAG),
            errors: BrokerOp::ALL.map(|op| counter!(BROKER_ERRORS, "op" => op.label())),
            room_made: counter!(BROKER_ROOM_MADE),
            wait_timeouts: counter!(BROKER_WAIT_TIMEOUTS),
            failovers: counter!(BROKER_FAILOVERS),
            failover_pauses: counter!(BROKER_FAILOVER_PAUSES),
            reader_stalls: counter!(BROKER_READER_STALLS),
        };
        metrics.failovers.absolute(0);
        metrics.failover_pauses.absolute(0);
        metrics.reader_stalls.absolute(0);
        metrics.room_made.absolute(0);
        metrics.wait_timeouts.absolute(0);
        metrics.up.set(0.0);
        for c in &metrics.errors {
            c.absolute(0);
        }
        metrics
    }

    pub(crate) fn error(&self, op: BrokerOp) {
        self.errors[op as usize].increment(1);
    }

    /// Registers the refusal series at 0, one per reason.
    pub(crate) fn refusal_reasons(&self, reasons: impl IntoIterator<Item = &'static str>) {
        for reason in reasons {
            counter!(BROKER_REFUSALS, "reason" => reason).absolute(0);
        }
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        counter!(BROKER_REFUSALS, "reason" => reason).increment(1);
    }

    pub(crate) fn room_made(&self) {
        self.room_made.increment(1);
    }

    pub(crate) fn wait_timeout(&self) {
        self.wait_timeouts.increment(1);
    }

    pub(crate) fn failover_paused(&self) {
        self.failover_pauses.increment(1);
    }

    pub(crate) fn reader_stall(&self) {
        self.reader_stalls.increment(1);
    }

    /// The primary in use is now `new` (1); `old`, if any, was followed
    /// away from (0, and one failover counted).
    pub(crate) fn primary(&self, old: Option<&(String, u16)>, new: &(String, u16)) {
        let info = |(host, port): &(String, u16)| gauge!(BROKER_PRIMARY_INFO, "server_address" => host.clone(), "server_port" => port.to_string());
        if let Some(old) = old {
            info(old).set(0.0);
            self.failovers.increment(1);
        }
        info(new).set(1.0);
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
