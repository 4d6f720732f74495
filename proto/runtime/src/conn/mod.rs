//! Connection hygiene on every port either binary listens on, and the serve
//! loops that apply it ([`serve_http`] for axum, [`serve_grpc`] for the gRPC
//! port, one task per connection): a connection
//! that never starts a request is closed, an idle one is closed, and at
//! shutdown only connections with work in flight are waited for.
//!
//! What it owns, per accepted TCP connection (the same on the gRPC port,
//! plaintext or TLS, on `/metrics` and on the client's HTTP API):
//! - **handshake bound**: the first request must arrive within
//!   [`ConnLimits::handshake_timeout`] of the accept. That covers the TCP
//!   connection that sends nothing, a partial HTTP/2 preface, a TLS handshake
//!   that stalls, and a partial HTTP/1 request head. grpc-go allows 120 s for
//!   its handshake, hyper's HTTP/1 `header_read_timeout` is 30 s; ours
//!   defaults to 10 s, which no real client needs.
//! - **idle bound**: a connection with no request in flight for
//!   [`ConnLimits::idle_timeout`] is closed (HTTP/1 keep-alive, or an HTTP/2
//!   connection without streams; PINGs are not activity). Like grpc-go's
//!   `MaxConnectionIdle`, but abrupt: the peer's next request reconnects.
//! - **shutdown**: [`Hygiene::shutdown`] closes at once every connection that
//!   never started a request, and every other one [`CLOSE_LINGER`] after its
//!   last request ended (time for the final frames, the GOAWAY and the PING
//!   round trip that a graceful HTTP/2 close waits for). A peer that never
//!   answers PINGs can no longer hold shutdown for the whole grace period.
//!
//! Every HTTP/1 request on the axum listeners must also carry one valid
//! `Host` ([`host`], RFC 9112 §3.2), or it is answered 400.
//!
//! How: [`Guarded`] wraps the socket under TLS and HTTP and fails its reads
//! and writes once the connection is condemned, which makes hyper drop it;
//! [`Track`] counts each request from its head until its response body
//! ends, per connection, through the connection's [`ConnHandle`]. Counting is a few atomics that wake nobody: the connection's
//! watcher reads them when its own timer fires, so a busy connection's task
//! is not woken twice per request. Every close is counted in [`CLOSED_TOTAL`].

mod activity;
mod grpc;
mod guard;
pub mod host;
mod http;
mod inline;
mod tasks;
mod track;

pub use activity::{ConnHandle, RequestGuard};
pub use grpc::{GrpcSettings, serve_grpc};
pub use guard::{Guarded, Peer};
pub use host::{HostError, RequireHost};
pub use http::{grpc_incoming, serve_http};
pub use tasks::{ABANDON_BOUND, finish_by};
pub use track::{Track, TrackedBody};

use crate::cli::number;
use metrics::{Unit, counter, describe_counter};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const ENV_HANDSHAKE_TIMEOUT_MS: &str = "MESSENGER_HANDSHAKE_TIMEOUT_MS";
pub const ENV_IDLE_TIMEOUT_MS: &str = "MESSENGER_IDLE_TIMEOUT_MS";
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

/// How long a connection with nothing in flight is kept open at shutdown: the
/// final frames are flushed and the graceful HTTP/2 close (GOAWAY, then one
/// PING round trip, RFC 9113 §6.8) completes well inside it on any sane link.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// The `listener` label of the server's gRPC port.
pub const LISTENER_GRPC: &str = "grpc";
/// The `listener` label of the server's `/metrics` port.
pub const LISTENER_METRICS: &str = "metrics";
/// The `listener` label of the client's HTTP port (API and `/metrics`).
pub const LISTENER_HTTP: &str = "http";

/// Closed connections, by listener and reason (counter).
pub const CLOSED_TOTAL: &str = "messenger_connections_closed_total";

/// Why a connection was closed: the `reason` label of [`CLOSED_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No request within the handshake bound.
    HandshakeTimeout,
    /// No request in flight for the idle bound.
    IdleTimeout,
    /// Closed by (or during) shutdown.
    Shutdown,
    /// Ended by itself: the peer closed it, an error, or a graceful close.
    Ended,
}

impl Reason {
    pub const ALL: [Self; 4] = [
        Self::HandshakeTimeout,
        Self::IdleTimeout,
        Self::Shutdown,
        Self::Ended,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::HandshakeTimeout => "handshake_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Shutdown => "shutdown",
            Self::Ended => "ended",
        }
    }
}

/// The two bounds, as flags and environment variables of both binaries
/// (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ConnLimits {
    /// Milliseconds a new connection has to start its first request (TCP
    /// accepted until a whole HTTP/1 head or HTTP/2 request arrived, TLS
    /// handshake included); slower ones are closed.
    #[arg(long, env = ENV_HANDSHAKE_TIMEOUT_MS, default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS,
          value_parser = number::<u64>(50, 600_000))]
    pub handshake_timeout_ms: u64,

    /// Milliseconds a connection may stay open with no request in flight
    /// (HTTP/1 keep-alive, HTTP/2 without streams) before it is closed.
    #[arg(long, env = ENV_IDLE_TIMEOUT_MS, default_value_t = DEFAULT_IDLE_TIMEOUT_MS,
          value_parser = number::<u64>(50, 86_400_000))]
    pub idle_timeout_ms: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

impl ConnLimits {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// The hygiene of one listener: its bounds, its `listener` label and its
/// shutdown switch. Cheap to clone; clones share the switch.
#[derive(Debug, Clone)]
pub struct Hygiene {
    limits: ConnLimits,
    listener: &'static str,
    stop: CancellationToken,
    /// Set past the grace period: connections still open are aborted.
    abandon: CancellationToken,
}

impl Hygiene {
    /// `listener` is the metric label (`grpc`, `metrics`, `http`).
    pub fn new(limits: ConnLimits, listener: &'static str) -> Self {
        Self {
            limits,
            listener,
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
        }
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Starts shutdown: see the module docs. Idempotent.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Completes once [`Hygiene::shutdown`] was called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Ends the grace period (and starts shutdown, if it had not): the
    /// accept loop aborts the connections still open and returns once they
    /// are dropped ([`finish_by`]). Idempotent.
    pub fn abandon(&self) {
        self.stop.cancel();
        self.abandon.cancel();
    }

    /// Completes once [`Hygiene::abandon`] was called.
    pub fn abandoned(&self) -> impl Future<Output = ()> + Send + 'static {
        self.abandon.clone().cancelled_owned()
    }

    /// Wraps an accepted connection; see [`Guarded`].
    pub fn guard<IO: Peer>(&self, io: IO) -> Guarded<IO> {
        Guarded::new(io, self)
    }
}

/// Describes [`CLOSED_TOTAL`] and registers it at zero for each of
/// `listeners` and every [`Reason`]. Call after the recorder is installed.
pub fn register_metrics(listeners: &[&'static str]) {
    describe_counter!(
        CLOSED_TOTAL,
        Unit::Count,
        "Connections closed, by listener and reason: handshake_timeout (no request within the \
         handshake bound), idle_timeout (nothing in flight for the idle bound), shutdown, \
         ended (by the peer, an error or a graceful close)"
    );
    for listener in listeners {
        for reason in Reason::ALL {
            closed_counter(listener, reason).absolute(0);
        }
    }
}

fn closed_counter(listener: &'static str, reason: Reason) -> metrics::Counter {
    counter!(CLOSED_TOTAL, "listener" => listener, "reason" => reason.label())
}
