//! Every metric the client exports: names (a contract with the dashboards and
//! alerts), descriptions, buckets, and cached handles. [`Metrics::new`]
//! registers every series at zero so it is visible before the first event.

use messenger_runtime::metrics::{exponential_buckets, grpc_code_name};
use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;
use tonic::Code;

pub const HTTP_REQUESTS: &str = "http_server_requests_total";
pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const GRPC_HANDLED: &str = "grpc_client_handled_total";
pub const GRPC_HANDLING: &str = "grpc_client_handling_seconds";
pub const BUFFERED: &str = "messenger_client_buffered_messages";
pub const RECEIVED: &str = "messenger_client_received_total";
pub const DROPPED: &str = "messenger_client_dropped_total";
pub const END_TO_END: &str = "messenger_client_end_to_end_latency_seconds";
pub const STREAM_CONNECTED: &str = "messenger_client_stream_connected";
pub const STREAM_RECONNECTS: &str = "messenger_client_stream_reconnects_total";
pub const RESUMES: &str = "messenger_client_resumes_total";
pub const RECOVERED: &str = "messenger_client_recovered_messages_total";
pub const EVENT_STREAMS: &str = "messenger_client_event_streams";
pub const EVENTS_SENT: &str = "messenger_client_events_sent_total";
pub const EVENT_RESUMES: &str = "messenger_client_event_resumes_total";
pub const EVENT_GAPS: &str = "messenger_client_event_gaps_total";
pub const EVENT_STREAMS_CUT: &str = "messenger_client_event_streams_cut_total";

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Routes registered at zero, with the method each answers.
const ROUTES: [(&str, &str); 4] = [
    ("POST", "/sendMessage"),
    ("POST", "/getAndFlushMessages"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
];

/// 50 µs .. ~3 s.
static HTTP_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(5e-5, 2.0, 17));
/// 100 µs .. ~100 s: unary calls are fast, streams live long.
static GRPC_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(1e-4, 4.0, 11));
/// 10 µs .. ~10 s.
static E2E_BUCKETS: LazyLock<Vec<f64>> = LazyLock::new(|| exponential_buckets(1e-5, 2.0, 21));

/// Buckets per histogram, for the exporter.
pub fn buckets() -> Vec<(&'static str, &'static [f64])> {
    vec![
        (HTTP_DURATION, HTTP_BUCKETS.as_slice()),
        (GRPC_HANDLING, GRPC_BUCKETS.as_slice()),
        (END_TO_END, E2E_BUCKETS.as_slice()),
    ]
}

/// Cached handles to the client's stream and buffer metrics.
#[derive(Clone)]
pub struct Metrics {
    pub buffered: Gauge,
    pub received: Counter,
    pub dropped: Counter,
    pub end_to_end: Histogram,
    pub connected: Gauge,
    pub reconnects: Counter,
    /// `messenger_client_resumes_total{result="recovered"}`.
    pub resumes_recovered: Counter,
    /// `messenger_client_resumes_total{result="gap"}`.
    pub resumes_gap: Counter,
    pub recovered: Counter,
}

impl Metrics {
    /// Describes and registers every series (at zero).
    pub fn new() -> Self {
        describe();
        for (method, route) in ROUTES {
            counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => "200")
                .absolute(0);
            let _ = histogram!(HTTP_DURATION, "method" => method, "route" => route);
        }
        for method in ["SendMessage", "ReadMessages"] {
            grpc_handled_counter(method, Code::Ok).absolute(0);
            let _ = histogram!(GRPC_HANDLING, "grpc_method" => method);
        }
        let metrics = Self {
            buffered: gauge!(BUFFERED),
            received: counter!(RECEIVED),
            dropped: counter!(DROPPED),
            end_to_end: histogram!(END_TO_END),
            connected: gauge!(STREAM_CONNECTED),
            reconnects: counter!(STREAM_RECONNECTS),
            resumes_recovered: counter!(RESUMES, "result" => "recovered"),
            resumes_gap: counter!(RESUMES, "result" => "gap"),
            recovered: counter!(RECOVERED),
        };
        metrics.buffered.set(0.0);
        metrics.connected.set(0.0);
        metrics.received.absolute(0);
        metrics.dropped.absolute(0);
        metrics.reconnects.absolute(0);
        metrics.resumes_recovered.absolute(0);
        metrics.resumes_gap.absolute(0);
        metrics.recovered.absolute(0);
        metrics
    }
}

/// Handles to the `/events` series ([`crate::events`]).
#[derive(Clone)]
pub struct EventMetrics {
    pub open: Gauge,
    pub sent: Counter,
    /// `messenger_client_event_resumes_total{result="recovered"}`.
    pub resumes_recovered: Counter,
    /// `messenger_client_event_resumes_total{result="gap"}`.
    pub resumes_gap: Counter,
    pub gaps: Counter,
    pub cut: Counter,
}

impl EventMetrics {
    /// Registers every `/events` series at zero.
    pub fn new() -> Self {
        describe();
        let m = Self {
            open: gauge!(EVENT_STREAMS),
            sent: counter!(EVENTS_SENT),
            resumes_recovered: counter!(EVENT_RESUMES, "result" => "recovered"),
            resumes_gap: counter!(EVENT_RESUMES, "result" => "gap"),
            gaps: counter!(EVENT_GAPS),
            cut: counter!(EVENT_STREAMS_CUT),
        };
        m.open.set(0.0);
        for c in [
            &m.sent,
            &m.resumes_recovered,
            &m.resumes_gap,
            &m.gaps,
            &m.cut,
        ] {
            c.absolute(0);
        }
        m
    }
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn grpc_handled_counter(method: &'static str, code: Code) -> Counter {
    counter!(GRPC_HANDLED, "grpc_method" => method, "grpc_code" => grpc_code_name(code))
}

/// Handles to the series every successful `/sendMessage` records, looked up
/// once rather than per request (a lookup hashes the labels and takes the
/// registry's lock).
struct SendOk {
    http_requests: Counter,
    http_duration: Histogram,
    grpc_handled: Counter,
    grpc_handling: Histogram,
}

static SEND_OK: OnceLock<SendOk> = OnceLock::new();

/// Resolves the hot-path handles; call once the recorder is installed
/// (until then, and in tests that never call it, every series is looked up).
pub fn cache_hot_path() {
    SEND_OK.get_or_init(|| SendOk {
        http_requests: counter!(HTTP_REQUESTS, "method" => "POST", "route" => SEND_ROUTE, "status" => "200"),
        http_duration: histogram!(HTTP_DURATION, "method" => "POST", "route" => SEND_ROUTE),
        grpc_handled: grpc_handled_counter(SEND_METHOD, Code::Ok),
        grpc_handling: histogram!(GRPC_HANDLING, "grpc_method" => SEND_METHOD),
    });
}

const SEND_ROUTE: &str = "/sendMessage";
const SEND_METHOD: &str = "SendMessage";

/// Records one finished client call (a stream counts when it ends).
pub fn grpc_handled(method: &'static str, code: Code, elapsed: Duration) {
    if let (Some(hot), SEND_METHOD, Code::Ok) = (SEND_OK.get(), method, code) {
        hot.grpc_handled.increment(1);
        hot.grpc_handling.record(elapsed.as_secs_f64());
        return;
    }
    grpc_handled_counter(method, code).increment(1);
    histogram!(GRPC_HANDLING, "grpc_method" => method).record(elapsed.as_secs_f64());
}

/// Records one HTTP request.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    if let (Some(hot), "POST", SEND_ROUTE, 200) = (SEND_OK.get(), method, route, status) {
        hot.http_requests.increment(1);
        hot.http_duration.record(elapsed.as_secs_f64());
        return;
    }
    let (method, route) = (method.to_owned(), route.to_owned());
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests served, by method, matched route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration, by method and matched route."
    );
    describe_counter!(
        GRPC_HANDLED,
        "gRPC calls to the server completed, by method and status code."
    );
    describe_histogram!(
        GRPC_HANDLING,
        metrics::Unit::Seconds,
        "gRPC call duration (stream lifetime for ReadMessages)."
    );
    describe_gauge!(
        BUFFERED,
        "Messages buffered now: what /getAndFlushMessages would return."
    );
    describe_counter!(RECEIVED, "Messages received on the ReadMessages stream.");
    describe_counter!(
        DROPPED,
        "Oldest messages dropped because the buffer was full."
    );
    describe_histogram!(
        END_TO_END,
        metrics::Unit::Seconds,
        "Receipt time minus the message's sendTime."
    );
    describe_gauge!(
        STREAM_CONNECTED,
        "1 while the ReadMessages stream is open, else 0."
    );
    describe_counter!(
        RESUMES,
        "Re-subscriptions that asked to resume, by result (recovered|gap)."
    );
    describe_counter!(
        RECOVERED,
        "Messages received from the server's history after a resume."
    );
    describe_gauge!(EVENT_STREAMS, "GET /events streams open now.");
    describe_counter!(
        EVENTS_SENT,
        "Server-Sent Events handed to /events streams (messages, open and gap events; not keep-alives)."
    );
    describe_counter!(
        EVENT_RESUMES,
        "/events streams opened with Last-Event-ID or ?since, by result (recovered|gap)."
    );
    describe_counter!(
        EVENT_GAPS,
        "gap events sent: a resume the server's history could not cover."
    );
    describe_counter!(
        EVENT_STREAMS_CUT,
        "/events streams cut for falling a whole queue behind or stalling a replay (the reconnect resumes)."
    );
    describe_counter!(
        STREAM_RECONNECTS,
        "Times the stream was re-established after the first subscription."
    );
}
