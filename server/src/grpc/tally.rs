//! Every call of a messenger method is counted once in
//! `grpc_server_started_total`, `grpc_server_handled_total` and
//! `grpc_server_handling_seconds`, whatever ends it.
//!
//! The handlers count the calls they run: only they know how a stream ends.
//! But a call can end before its handler runs:
//! - refused by the request head's checks (method, content-type,
//!   `grpc-timeout`, including `0n`) or by
//!   [`Admission`](crate::grpc::admission::Admission) (credentials, load
//!   shedding);
//! - its request message malformed, over the receive limit, missing,
//!   repeated or late (tonic's codec and `one_message` answer before the
//!   handler is called);
//! - its deadline passed, or its caller gone, while it waited for that
//!   message;
//! - its request stream reset by this server's HTTP/2 layer for the
//!   caller's protocol error (`one_message`: counted with the code the
//!   caller's RST_STREAM maps to, `Internal` for `PROTOCOL_ERROR`).
//!
//! [`Spec`](crate::grpc::status_spec::Spec) counts those here, for the two
//! messenger methods: it opens a [`Tally`] for the call and puts its claim in
//! the request's extensions ([`Claim`]). A handler that runs claims the call
//! ([`Claim::take`], where it counts `started`) and counts it from then on.
//! A call still unclaimed when its response head is ready is counted with
//! the `grpc-status` that head carries (every answer before a handler is
//! trailers-only); one dropped before that, as the handlers count a dropped
//! call: `DeadlineExceeded` at or past its deadline, else `Canceled`.
//!
//! Invariant: each call is counted by exactly one side, the handler (claimed)
//! or its tally (unclaimed), because the claim is taken before the handler
//! counts and read only after the handler can no longer start.

use crate::ops::metrics::{Metrics, RpcMetrics};
use http::HeaderMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;
use tonic::Code;

/// The gRPC paths of the two messenger methods.
pub(crate) const SEND_PATH: &str = "/mes_grpc.MessengerServer/SendMessage";
pub(crate) const READ_PATH: &str = "/mes_grpc.MessengerServer/ReadMessages";

/// The metrics of the messenger method at `path`, if it names one.
pub(crate) fn rpc_of<'m>(metrics: &'m Metrics, path: &str) -> Option<&'m RpcMetrics> {
    match path {
        SEND_PATH => Some(&metrics.send),
        READ_PATH => Some(&metrics.read),
        _ => None,
    }
}

/// A handler claimed the call.
const CLAIMED: u8 = 1;
/// The caller reset the call while its request message was awaited.
const CALLER_RESET: u8 = 2;

/// A call's claim, in its request's extensions: taken by the handler that
/// runs it.
#[derive(Clone, Debug)]
pub(crate) struct Claim(Arc<AtomicU8>);

impl Claim {
    /// Claims the call in `extensions` for its handler, which counts it from
    /// now on; a call without a tally (a unit test's) has nothing to claim.
    pub(crate) fn take(extensions: &tonic::Extensions) {
        if let Some(claim) = extensions.get::<Claim>() {
            claim.0.fetch_or(CLAIMED, Ordering::AcqRel);
        }
    }

    /// The caller reset the call (any RST_STREAM code) or its connection
    /// failed before its request message ended. Nobody reads the answer: it
    /// is counted as `Canceled`, as a reset call is everywhere else.
    ///
    /// Not seen: an RST_STREAM(NO_ERROR), which hyper reports as the end of
    /// the request body (RFC 9113 §8.1 gives it to a server whose answer is
    /// complete; a client sending it after a whole message gets its call
    /// run).
    pub(crate) fn caller_reset(&self) {
        self.0.fetch_or(CALLER_RESET, Ordering::AcqRel);
    }
}

/// The count of one messenger call, made unless its handler claims it.
pub(crate) struct Tally {
    metrics: Arc<Metrics>,
    path: &'static str,
    claim: Arc<AtomicU8>,
    started: Instant,
    /// The caller's deadline, for a call dropped unclaimed.
    deadline: Option<tokio::time::Instant>,
    counted: bool,
}

impl Tally {
    /// The tally of a call to `path` and its claim for the request's
    /// extensions; `None` for a path that names no messenger method.
    pub(crate) fn open(metrics: &Arc<Metrics>, path: &str) -> Option<(Self, Claim)> {
        let path = match path {
            SEND_PATH => SEND_PATH,
            READ_PATH => READ_PATH,
            _ => return None,
        };
        let claim = Arc::new(AtomicU8::new(0));
        let tally = Self {
            metrics: Arc::clone(metrics),
            path,
            claim: Arc::clone(&claim),
            started: Instant::now(),
            deadline: None,
            counted: false,
        };
        Some((tally, Claim(claim)))
    }

    /// Sets the caller's deadline (`grpc-timeout` from the request's arrival).
    pub(crate) fn with_deadline(mut self, deadline: Option<tokio::time::Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The call's response head is ready: counted with its `grpc-status`
    /// unless the handler claimed the call (or the head carries none, which
    /// only a handler's answer can).
    pub(crate) fn ended(mut self, headers: &HeaderMap) {
        let code = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(Code::from_i32);
        match code {
            Some(code) => self.ended_with(code),
            None => self.counted = true,
        }
    }

    /// The call ended with `code` before any handler answered it: counted
    /// unless the handler claimed it.
    pub(crate) fn ended_with(mut self, code: Code) {
        self.count(code);
    }

    fn count(&mut self, code: Code) {
        self.counted = true;
        let state = self.claim.load(Ordering::Acquire);
        if state & CLAIMED != 0 {
            return;
        }
        let code = match state & CALLER_RESET {
            0 => code,
            _ => Code::Cancelled,
        };
        let Some(rpc) = rpc_of(&self.metrics, self.path) else {
            return;
        };
        rpc.started.increment(1);
        rpc.handled(code);
        rpc.handling.record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.counted {
            let code = match self.deadline {
                Some(at) if tokio::time::Instant::now() >= at => Code::DeadlineExceeded,
                _ => Code::Cancelled,
            };
            self.count(code);
        }
    }
}
