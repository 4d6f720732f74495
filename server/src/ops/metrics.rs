//! Every metric the server exports: names (a contract with the dashboards and
//! alerts), descriptions, buckets, and cached handles. [`Metrics::new`]
//! registers every series at zero so it is visible before the first event.
//! [`serve`] answers `GET /metrics` on the metrics listener; [`track_subscribers`]
//! keeps the subscriber gauge in step with the hub.

mod broker;

pub(crate) use broker::{
    BROKER_PUBLISH, BROKER_PUBLISH_BATCH, BROKER_READ_LAG, BrokerMetrics, BrokerOp,
};

use messenger_proto::quote::quote;
use messenger_runtime::conn::Hygiene;
use messenger_runtime::metrics::{Exporter, ShardedHistogram, exponential_buckets, grpc_code_name};
use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use std::sync::{Arc, LazyLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;

pub(crate) const GRPC_STARTED: &str = "grpc_server_started_total";
pub(crate) const GRPC_HANDLED: &str = "grpc_server_handled_total";
pub(crate) const GRPC_MSG_SENT: &str = "grpc_server_msg_sent_total";
pub(crate) const GRPC_MSG_RECEIVED: &str = "grpc_server_msg_received_total";
pub(crate) const GRPC_HANDLING: &str = "grpc_server_handling_seconds";
pub(crate) const ACCEPTED: &str = "messenger_messages_accepted_total";
pub(crate) const SUBSCRIBERS: &str = "messenger_subscribers";
pub(crate) const FANOUT_DURATION: &str = "messenger_fanout_duration_seconds";
pub(crate) const DELIVERY_LATENCY: &str = "messenger_delivery_latency_seconds";
const DELIVERY_LATENCY_HELP: &str = "Per subscriber and message: acceptance until the message is written to the subscriber's stream.";
pub(crate) const DELIVERED: &str = "messenger_messages_delivered_total";
pub(crate) const DISCONNECTS: &str = "messenger_subscriber_disconnects_total";
pub(crate) const HISTORY_MESSAGES: &str = "messenger_history_messages";
pub(crate) const HISTORY_BYTES: &str = "messenger_history_bytes";
pub(crate) const RESUMES: &str = "messenger_resumes_total";
pub(crate) const REPLAYED: &str = "messenger_replayed_messages_total";

const SERVICE: &str = messenger_proto::SERVICE_NAME;

/// 1 µs .. ~1 s.
static FANOUT_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(1e-6, 2.0, 21));
/// 10 µs .. ~10 s.
static DELIVERY_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(1e-5, 2.0, 21));
/// 100 µs .. ~100 s: unary calls are fast, streams live long.
static HANDLING_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(1e-4, 4.0, 11));

/// Buckets per histogram, for the exporter.
pub(crate) fn buckets() -> Vec<(&'static str, &'static [f64])> {
    vec![
        (FANOUT_DURATION, FANOUT_BUCKETS.as_slice()),
        (GRPC_HANDLING, HANDLING_BUCKETS.as_slice()),
        (BROKER_PUBLISH, broker::PUBLISH_BUCKETS.as_slice()),
        (
            BROKER_PUBLISH_BATCH,
            broker::PUBLISH_BATCH_BUCKETS.as_slice(),
        ),
        (BROKER_READ_LAG, broker::READ_LAG_BUCKETS.as_slice()),
    ]
}

/// Why a subscriber's stream ended, as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    Slow,
    Cancelled,
    Shutdown,
    Error,
}

impl DisconnectReason {
    const ALL: [Self; 4] = [Self::Slow, Self::Cancelled, Self::Shutdown, Self::Error];
    fn label(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::Cancelled => "cancelled",
            Self::Shutdown => "shutdown",
            Self::Error => "error",
        }
    }
}

/// go-grpc-prometheus style series for one method.
pub(crate) struct RpcMetrics {
    method: &'static str,
    grpc_type: &'static str,
    pub started: Counter,
    pub msg_received: Counter,
    pub msg_sent: Counter,
    pub handling: Histogram,
    handled_ok: Counter,
}

impl RpcMetrics {
    fn new(method: &'static str, grpc_type: &'static str) -> Self {
        let labels = [
            ("grpc_type", grpc_type),
            ("grpc_service", SERVICE),
            ("grpc_method", method),
        ];
        Self {
            method,
            grpc_type,
            started: counter!(GRPC_STARTED, &labels),
            msg_received: counter!(GRPC_MSG_RECEIVED, &labels),
            msg_sent: counter!(GRPC_MSG_SENT, &labels),
            handling: histogram!(GRPC_HANDLING, &labels),
            handled_ok: Self::handled_counter(method, grpc_type, Code::Ok),
        }
    }

    fn handled_counter(method: &'static str, grpc_type: &'static str, code: Code) -> Counter {
        counter!(GRPC_HANDLED, "grpc_type" => grpc_type, "grpc_service" => SERVICE,
                 "grpc_method" => method, "grpc_code" => grpc_code_name(code))
    }

    /// Counts one finished call with its status code.
    pub(crate) fn handled(&self, code: Code) {
        match code {
            Code::Ok => self.handled_ok.increment(1),
            code => Self::handled_counter(self.method, self.grpc_type, code).increment(1),
        }
    }
}

/// Cached handles to every server metric.
pub(crate) struct Metrics {
    pub send: RpcMetrics,
    pub read: RpcMetrics,
    pub accepted: Counter,
    pub delivered: Counter,
    pub subscribers: Gauge,
    pub fanout_duration: Histogram,
    /// Per delivery: a [`ShardedHistogram`], not the recorder's (its doc says why).
    pub delivery_latency: Arc<ShardedHistogram>,
    disconnects: [Counter; 4],
    pub history_messages: Gauge,
    pub history_bytes: Gauge,
    /// `result="recovered"`, `result="gap"`.
    pub resumes_recovered: Counter,
    pub resumes_gap: Counter,
    pub replayed: Counter,
}

impl Metrics {
    /// Describes and registers every series (at zero).
    pub(crate) fn new() -> Self {
        describe();
        let disconnects =
            DisconnectReason::ALL.map(|r| counter!(DISCONNECTS, "reason" => r.label()));
        let metrics = Self {
            send: RpcMetrics::new("SendMessage", "unary"),
            read: RpcMetrics::new("ReadMessages", "server_stream"),
            accepted: counter!(ACCEPTED),
            delivered: counter!(DELIVERED),
            subscribers: gauge!(SUBSCRIBERS),
            fanout_duration: histogram!(FANOUT_DURATION),
            delivery_latency: ShardedHistogram::register(
                DELIVERY_LATENCY,
                DELIVERY_LATENCY_HELP,
                &DELIVERY_BUCKETS,
            ),
            disconnects,
            history_messages: gauge!(HISTORY_MESSAGES),
            history_bytes: gauge!(HISTORY_BYTES),
            resumes_recovered: counter!(RESUMES, "result" => "recovered"),
            resumes_gap: counter!(RESUMES, "result" => "gap"),
            replayed: counter!(REPLAYED),
        };
        for c in [
            &metrics.resumes_recovered,
            &metrics.resumes_gap,
            &metrics.replayed,
            &metrics.accepted,
            &metrics.delivered,
            &metrics.send.handled_ok,
            &metrics.read.handled_ok,
        ] {
            c.absolute(0);
        }
        metrics.subscribers.set(0.0);
        metrics.history_messages.set(0.0);
        metrics.history_bytes.set(0.0);
        metrics
    }

    /// Mirrors history's size into its gauges.
    pub(crate) fn history(&self, stats: crate::core::history::HistoryStats) {
        self.history_messages.set(stats.messages as f64);
        self.history_bytes.set(stats.bytes as f64);
    }

    pub(crate) fn disconnected(&self, reason: DisconnectReason, count: u64) {
        self.disconnects[reason as usize].increment(count);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn describe() {
    describe_counter!(GRPC_STARTED, "RPCs started on the server.");
    describe_counter!(
        GRPC_HANDLED,
        "RPCs completed on the server, by status code."
    );
    describe_counter!(GRPC_MSG_SENT, "gRPC stream messages sent by the server.");
    describe_counter!(
        GRPC_MSG_RECEIVED,
        "gRPC stream messages received by the server."
    );
    describe_histogram!(
        GRPC_HANDLING,
        metrics::Unit::Seconds,
        "Time from RPC start to completion (stream lifetime for ReadMessages)."
    );
    describe_counter!(ACCEPTED, "Messages accepted by SendMessage.");
    describe_gauge!(SUBSCRIBERS, "Open ReadMessages streams.");
    describe_histogram!(
        FANOUT_DURATION,
        metrics::Unit::Seconds,
        "Time for one SendMessage to hand its message to every subscriber queue."
    );
    describe_counter!(
        DELIVERED,
        "Messages written to subscriber streams (one per subscriber per message)."
    );
    describe_gauge!(
        HISTORY_MESSAGES,
        "Messages held in history for resuming subscribers."
    );
    describe_gauge!(
        HISTORY_BYTES,
        metrics::Unit::Bytes,
        "Accounted bytes of history (author + text + traceparent + the encoded message + fixed overhead per message)."
    );
    describe_counter!(
        RESUMES,
        "ReadMessages calls with messenger-since, by result (recovered|gap)."
    );
    describe_counter!(
        REPLAYED,
        "Messages written to resuming subscribers from history."
    );
    describe_counter!(
        DISCONNECTS,
        "Subscriber streams ended by the server or the peer, by reason (slow|cancelled|shutdown|error)."
    );
}

/// Serves `GET /metrics` from `exporter`, and the `debug` routes, on
/// `listener` under `hygiene` (handshake and idle bounds) until it shuts down.
/// An unknown path is 404, a wrong method 405, each with a JSON error
/// ([`refusal`]), as every HTTP error of both binaries.
pub(crate) async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    debug: axum::Router,
    hygiene: Hygiene,
) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move { exporter.render() }),
        )
        .merge(debug)
        .fallback(|method: http::Method, uri: http::Uri| async move {
            refusal(http::StatusCode::NOT_FOUND, &method, &uri)
        })
        .method_not_allowed_fallback(|method: http::Method, uri: http::Uri| async move {
            refusal(http::StatusCode::METHOD_NOT_ALLOWED, &method, &uri)
        });
    messenger_runtime::conn::serve_http(listener, app, hygiene).await;
}

/// The routes of the metrics port, as a 404 lists them.
const ROUTES: &str = "GET /metrics, GET /debug/subscribers";

/// 404 or 405 with `{"error": ...}`, quoting the method and path by the rule.
fn refusal(
    status: http::StatusCode,
    method: &http::Method,
    uri: &http::Uri,
) -> (http::StatusCode, axum::Json<serde_json::Value>) {
    let (method, path) = (quote(method.as_str()), quote(uri.path()));
    let error = if status == http::StatusCode::METHOD_NOT_ALLOWED {
        format!("method {method} is not allowed on {path}; the routes are {ROUTES}")
    } else {
        format!("no route for {method} {path} on the metrics port; the routes are {ROUTES}")
    };
    (status, axum::Json(serde_json::json!({ "error": error })))
}

/// Mirrors the hub's subscriber count into the `messenger_subscribers` gauge.
/// Ends when the hub is dropped.
pub(crate) async fn track_subscribers(mut count: watch::Receiver<usize>, metrics: Arc<Metrics>) {
    loop {
        metrics.subscribers.set(*count.borrow_and_update() as f64);
        if count.changed().await.is_err() {
            return;
        }
    }
}
