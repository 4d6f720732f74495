//! The send path: one `SendMessage` call per `/sendMessage`.
//!
//! Invariants:
//! - Every call ends within the send deadline (`MESSENGER_SEND_TIMEOUT_MS`),
//!   sent to the server as `grpc-timeout` and enforced here too, so a server
//!   that never answers cannot hold a request.
//! - Every call has a CLIENT span `mes_grpc.MessengerServer/SendMessage`
//!   whose context travels in the request metadata when it is sampled (else
//!   the HTTP caller's, unchanged), and is counted once in
//!   `grpc_client_handled_total` / `grpc_client_handling_seconds` with the
//!   code its outcome stands for ([`BackendError::code`]).
//! - A status that tonic made from its own deadline (`TimeoutExpired`, which
//!   it reports as `CANCELLED` "Timeout expired" wrapped in a transport
//!   error) is the send deadline (504: the message may have been accepted),
//!   never "unreachable"; any other status tonic made from a connection
//!   failure counts as "unreachable" (503 for the caller), whatever its code.

use super::{Backend, BackendError, MessageSender, SendFuture};
use crate::metrics;
use messenger_proto::pb::SendMessageRequest;
use messenger_proto::time::format_rfc3339;
use messenger_runtime::telemetry::{inject_metadata, record_rpc_status};
use std::time::Instant;
use tonic::{Code, Request, Status};
use tracing::Instrument;

impl MessageSender for Backend {
    fn send(&self, author: String, text: String) -> SendFuture<'_> {
        Box::pin(self.send_message(author, text))
    }
}

impl Backend {
    /// Sends one message; returns its sendTime as RFC 3339 with 9 digits.
    async fn send_message(&self, author: String, text: String) -> Result<String, BackendError> {
        let span = messenger_runtime::rpc_span!(client, "SendMessage");
        let started = Instant::now();
        let result = self.call_send(author, text).instrument(span.clone()).await;
        let code = result
            .as_ref()
            .map_or_else(BackendError::code, |_| Code::Ok);
        record_rpc_status(&span, code);
        metrics::grpc_handled("SendMessage", code, started.elapsed());
        result
    }

    async fn call_send(&self, author: String, text: String) -> Result<String, BackendError> {
        let mut request = Request::new(SendMessageRequest { author, text });
        self.set_send_timeout(request.metadata_mut());
        inject_metadata(&outgoing_context(), request.metadata_mut());
        self.authorize(request.metadata_mut());
        let mut client = self.client.clone();
        let response = tokio::time::timeout(self.send_timeout, client.send_message(request))
            .await
            .map_err(|_| BackendError::Timeout(self.send_timeout))?
            .map_err(|status| self.classify(status))?;
        let send_time = response.into_inner().send_time;
        send_time
            .as_ref()
            .and_then(format_rfc3339)
            .ok_or(BackendError::BadResponse)
    }

    /// What a refused call means for the HTTP caller.
    pub(super) fn classify(&self, status: Status) -> BackendError {
        let (addr, message) = (self.addr().to_owned(), status.message().to_owned());
        match status.code() {
            _ if timed_out(&status) => BackendError::Timeout(self.send_timeout),
            _ if from_transport(&status) => BackendError::Unavailable { addr, message },
            Code::Unavailable => BackendError::ServerUnavailable { addr, message },
            Code::DeadlineExceeded => BackendError::Timeout(self.send_timeout),
            code => BackendError::Rejected {
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

/// The context to propagate: our CLIENT span's when it is sampled, else the
/// HTTP caller's unchanged (kept current by the observe middleware), so an
/// unsampled or unrecorded trace still reaches the server and its receivers.
fn outgoing_context() -> opentelemetry::Context {
    messenger_runtime::telemetry::outgoing_current()
}

/// Whether tonic made this status from its own `grpc-timeout` deadline: the
/// request may have reached the server, so this is a timeout, not a
/// connection failure (it also comes wrapped in a transport error).
fn timed_out(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether tonic made this status from a connection failure (reset, GOAWAY
/// race, refused) rather than receiving it from the server.
fn from_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How tonic's channel reports its own deadline: `CANCELLED` "Timeout
    /// expired" whose source is a transport error around `TimeoutExpired`.
    #[test]
    fn tonic_deadline_is_a_timeout_not_a_transport_failure() {
        let expired: Box<dyn std::error::Error + Send + Sync> = Box::new(tonic::TimeoutExpired(()));
        let status = Status::from_error(expired);
        assert_eq!(status.code(), Code::Cancelled);
        assert!(timed_out(&status), "{status:?}");
        let plain = Status::cancelled("Timeout expired");
        assert!(!timed_out(&plain));
        assert!(!from_transport(&plain));
    }
}
