//! Why the `ReadMessages` stream is down, told from a failed subscribe, and
//! how that is reported: the log, `/readyz` and `/sendMessage`.
//!
//! Invariants:
//! - A permanent misconfiguration (TLS: [`messenger_runtime::tls::diagnose`];
//!   credentials: UNAUTHENTICATED / PERMISSION_DENIED; a peer that is not a
//!   gRPC server) is logged at ERROR in one line naming the variable to fix,
//!   when it starts or changes. Passing failures are logged at WARN on the
//!   same terms.
//! - Each kind of failure is logged loudly the first time it appears in a run
//!   of failures; while failures repeat, each attempt is logged at debug, and
//!   the failure is logged again at its own level, with the attempts and the
//!   time so far, once per report interval ([`Reports`]): a client that cannot
//!   subscribe never goes silent, nor repeats itself at every attempt.
//! - Every kind is retried with the same capped, jittered backoff (the
//!   subscriber loop's): fixing a file or restarting the server with the right
//!   one heals the client without a restart.

use crate::config::{ENV_CLIENT_TOKEN, ENV_SERVER_ADDR};
use messenger_runtime::tls::{Misconfiguration, misconfiguration};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

/// Why the last subscribe attempt failed, while that is the latest outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// The server refused this client's token (or its lack of one).
    Refused { code: Code, message: String },
    /// TLS cannot work until a file or a variable changes.
    Misconfigured(Misconfiguration),
    /// The peer answered, but not as a gRPC server: an HTTP/1 port, an HTTP
    /// server without gRPC, another service. `what` says what it did.
    NotGrpc { what: String },
    /// Anything that may pass by itself: refused or reset connections,
    /// timeouts, a server shutting down.
    Failing { code: Code, message: String },
}

impl Down {
    /// Classifies a failed `ReadMessages` call.
    pub fn of(status: &Status) -> Self {
        if let Some(m) = misconfiguration(status) {
            return Self::Misconfigured(m);
        }
        if let Some(what) = not_grpc(status) {
            return Self::NotGrpc { what };
        }
        let (code, message) = (status.code(), status.message().to_owned());
        if matches!(code, Code::Unauthenticated | Code::PermissionDenied) {
            Self::Refused { code, message }
        } else {
            Self::Failing { code, message }
        }
    }

    /// Whether `self` is a different failure from `previous` (a new one to
    /// report), rather than the same one again.
    pub fn differs_from(&self, previous: Option<&Self>) -> bool {
        match (self, previous) {
            (Self::Refused { code: a, .. }, Some(Self::Refused { code: b, .. })) => a != b,
            (Self::Misconfigured(a), Some(Self::Misconfigured(b))) => a != b,
            (Self::NotGrpc { .. }, Some(Self::NotGrpc { .. })) => false,
            (Self::Failing { code: a, .. }, Some(Self::Failing { code: b, .. })) => a != b,
            _ => true,
        }
    }

    /// Logs this failure after `failures` attempts: loudly when `report`
    /// says so (see [`Reports`]), else at debug.
    pub fn log(&self, server: &str, failures: u32, report: Report) {
        let again = match report {
            Report::Quiet => {
                let code = match self {
                    Self::Refused { code, .. } | Self::Failing { code, .. } => Some(*code),
                    Self::Misconfigured(_) | Self::NotGrpc { .. } => None,
                };
                tracing::debug!(failures, ?code, "subscribe attempt failed");
                return;
            }
            Report::New => String::new(),
            Report::Again { failing_for } => format!(
                "still, after {failures} attempts over {:.1}s: ",
                failing_for.as_secs_f64()
            ),
        };
        match self {
            Self::Misconfigured(m) => tracing::error!(
                server,
                variable = m.variable,
                "{again}TLS misconfiguration: {}; retrying with backoff",
                m.message
            ),
            Self::Refused { code, message } => tracing::error!(
                server,
                ?code,
                message,
                "{again}the server refused this client's credentials (check {ENV_CLIENT_TOKEN}); retrying with backoff"
            ),
            Self::NotGrpc { what } => tracing::error!(
                server,
                variable = ENV_SERVER_ADDR,
                "{again}{}; retrying with backoff",
                not_grpc_line(server, what)
            ),
            Self::Failing { code, message } => tracing::warn!(
                server,
                ?code,
                message,
                "{again}cannot subscribe; retrying with backoff (the HTTP port opens once subscribed)"
            ),
        }
    }

    /// One line for an HTTP caller: what is wrong and what to do.
    pub fn reason(&self) -> String {
        match self {
            Self::Refused { code, message } => {
                format!("the server refused this client's credentials ({code:?}: {message})")
            }
            Self::Misconfigured(m) => m.message.clone(),
            Self::NotGrpc { what } => not_grpc_line("the server address", what),
            Self::Failing { code, message } => {
                format!("the last attempt failed ({code:?}: {message})")
            }
        }
    }
}

/// The start of the status a subscribe attempt ends with when the response
/// headers are not gRPC's (see the subscriber loop).
pub const NOT_GRPC_RESPONSE: &str = "the response is not gRPC";

/// `what` a non-gRPC peer did, when `status` says the peer at the server
/// address answered but is not a gRPC server:
/// - an HTTP/2 framing error the client detected (tonic's "h2 protocol
///   error", INTERNAL): the peer does not speak HTTP/2, e.g. an HTTP/1 port,
///   which answers the HTTP/2 preface with `HTTP/1.1 400`;
/// - an HTTP response without `grpc-status` (tonic maps its HTTP status):
///   an HTTP server that is not gRPC;
/// - response headers without a gRPC content type ([`NOT_GRPC_RESPONSE`]).
fn not_grpc(status: &Status) -> Option<String> {
    let message = status.message();
    if message.starts_with(NOT_GRPC_RESPONSE) {
        return Some(format!(
            "it answered HTTP, but {message}: an HTTP server, not gRPC"
        ));
    }
    if status.code() == Code::Internal && message.starts_with("h2 protocol error") {
        return Some(format!(
            "it does not speak HTTP/2 ({message}): an HTTP/1 server or another protocol"
        ));
    }
    if message.starts_with("grpc-status header missing")
        || message.starts_with("protocol error: missing grpc-status")
    {
        return Some(format!(
            "it answered HTTP without a gRPC status ({message}): an HTTP server, not gRPC"
        ));
    }
    None
}

fn not_grpc_line(server: &str, what: &str) -> String {
    format!(
        "{server} is not a gRPC server: {what}; set {ENV_SERVER_ADDR} to the messenger server's \
         gRPC port (51075 by default)"
    )
}

/// Whether a failed attempt is logged loudly (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The first failure, or a different one from the last.
    New,
    /// The same failure, again after a report interval.
    Again { failing_for: Duration },
    /// The same failure, within the interval: debug only.
    Quiet,
}

/// When the subscriber loop reports a failure: the first time each kind
/// appears in a run of failures (so two kinds that alternate, as a peer that
/// is not gRPC gives, are each reported once, not at every attempt), then
/// once per `interval` while the run lasts.
#[derive(Debug)]
pub struct Reports {
    interval: Duration,
    /// When the current run of failures started, and when it was last reported.
    failing: Option<(Instant, Instant)>,
    /// The kinds reported in the current run.
    seen: Vec<Down>,
}

impl Reports {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            failing: None,
            seen: Vec::new(),
        }
    }

    /// An attempt failed with `failure` at `now`.
    pub fn failed(&mut self, failure: &Down, now: Instant) -> Report {
        let seen = self.seen.iter().any(|d| !failure.differs_from(Some(d)));
        let since = match self.failing {
            Some((since, last)) if seen => {
                if now.duration_since(last) < self.interval {
                    return Report::Quiet;
                }
                self.failing = Some((since, now));
                return Report::Again {
                    failing_for: now.duration_since(since),
                };
            }
            Some((since, _)) => since,
            None => now,
        };
        self.seen.push(failure.clone());
        self.failing = Some((since, now));
        Report::New
    }

    /// A stream opened: the next failure starts a new run.
    pub fn recovered(&mut self) {
        self.failing = None;
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_reported_once_then_again_once_per_interval() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let refused = Down::of(&Status::unavailable("tcp connect error"));
        let not_grpc = Down::of(&Status::internal("h2 protocol error: http2 error"));
        let transport = Down::of(&Status::unknown("transport error"));
        let mut reports = Reports::new(Duration::from_millis(100));
        assert_eq!(reports.failed(&refused, at(0)), Report::New);
        assert_eq!(reports.failed(&refused, at(50)), Report::Quiet);
        let again = |ms| Report::Again {
            failing_for: Duration::from_millis(ms),
        };
        assert_eq!(reports.failed(&refused, at(100)), again(100));
        assert_eq!(reports.failed(&refused, at(150)), Report::Quiet);
        assert_eq!(reports.failed(&refused, at(230)), again(230));
        // Two kinds alternating: each is new once, then both are quiet.
        assert_eq!(reports.failed(&not_grpc, at(240)), Report::New);
        assert_eq!(reports.failed(&transport, at(250)), Report::New);
        assert_eq!(reports.failed(&not_grpc, at(260)), Report::Quiet);
        assert_eq!(reports.failed(&transport, at(270)), Report::Quiet);
        assert_eq!(reports.failed(&not_grpc, at(350)), again(350));
        reports.recovered();
        assert_eq!(reports.failed(&not_grpc, at(360)), Report::New);
    }

    #[test]
    fn a_peer_that_is_not_grpc_is_named_as_such() {
        for status in [
            Status::internal("h2 protocol error: http2 error"),
            Status::unimplemented("grpc-status header missing, mapped from HTTP status code 404"),
            Status::unauthenticated("grpc-status header missing, mapped from HTTP status code 401"),
            Status::unknown(format!(
                "{NOT_GRPC_RESPONSE} (content-type application/json)"
            )),
        ] {
            let down = Down::of(&status);
            assert!(matches!(down, Down::NotGrpc { .. }), "{status:?}: {down:?}");
            assert!(
                down.reason().contains("is not a gRPC server"),
                "{}",
                down.reason()
            );
            assert!(down.reason().contains(ENV_SERVER_ADDR), "{}", down.reason());
        }
        assert!(matches!(
            Down::of(&Status::unavailable("tcp connect error")),
            Down::Failing { .. }
        ));
    }
}
