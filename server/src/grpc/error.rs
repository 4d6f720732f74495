//! The server's one error type at the gRPC boundary, and its one conversion
//! into `Status`.
//!
//! Every refusal the server gives a caller is a [`ServiceError`]: validation
//! of a request, load shedding and the subscriber cap (admission), token auth,
//! a subscriber that fell behind, shutdown, an unreachable broker, lost
//! broker history, and the refusals of the protocol layers (request
//! cardinality, deadline, health and reflection requests). [`ServiceError::code`] is the only
//! mapping from a refusal to a gRPC code, and `From<ServiceError> for Status`
//! the only place in the server that builds a `Status`. Messages tell the
//! caller what to do and name the variable behind a limit; they never contain
//! a token or a broker password, and repeat caller input only through
//! [`quote`] (at most 64 characters, a cut marked).

use crate::app::config::{
    ENV_AUTH_TOKENS_FILE, ENV_MAX_AUTHOR_BYTES, ENV_MAX_CONCURRENT_SENDS, ENV_MAX_SUBSCRIBERS,
    ENV_MAX_TEXT_BYTES,
};
use crate::core::broker::BrokerError;
use crate::core::history::state::StateError;
use crate::core::hub::{Disconnect, ShuttingDown, SubscribeError};
use crate::core::publish::PublishError;
use crate::core::resume::BadReadOptions;
use messenger_proto::limits::{Field, FieldTooLong};
use messenger_proto::quote::quote;
use messenger_runtime::conn::ENV_HANDSHAKE_TIMEOUT_MS;
use tonic::body::Body;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A `SendMessageRequest` field over its byte limit (the wire rule of
    /// [`messenger_proto::limits`]), with the variable that sets the limit.
    #[error("{0} ({env})", env = limit_env(.0.field))]
    FieldTooLong(#[from] FieldTooLong),
    #[error(
        "subscriber fell behind: its queue of {capacity} messages was full; \
         read the stream faster and resubscribe with `messenger-since` to replay the gap from history"
    )]
    FellBehind { capacity: usize },
    #[error("server shutting down")]
    ShuttingDown,
    /// The `sendTime` mark could not be written (`MESSENGER_STATE_DIR`): a
    /// stamp it does not cover could go back after a restart.
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "history lost: the broker's stream was lost or trimmed past this server; \
         resubscribe with `messenger-since` to learn of the gap"
    )]
    HistoryLost,
    /// A replica whose broker has been unreachable since it started has no
    /// stream history (nor epoch) to serve a subscription from yet.
    #[error(
        "broker {broker}: this server has not loaded the stream yet (the broker has been \
         unreachable since it started); retry with backoff"
    )]
    BrokerNotLoaded { broker: std::sync::Arc<str> },
    /// The broker could not take (or this replica could not deliver) a
    /// message within `MESSENGER_BROKER_TIMEOUT_MS`; the text names the
    /// broker, then whether a resend is safe ([`BrokerError::advice`]).
    #[error("{0}; {advice}", advice = .0.advice())]
    Broker(#[from] BrokerError),
    #[error(
        "the server already has its maximum of {max} subscribers ({ENV_MAX_SUBSCRIBERS}); \
         retry later or raise the limit"
    )]
    TooManySubscribers { max: usize },
    /// `SendMessage` shed by admission: `max` calls were already in flight.
    #[error(
        "server overloaded: {max} SendMessage calls already in flight \
         ({ENV_MAX_CONCURRENT_SENDS}); retry with backoff"
    )]
    Overloaded { max: usize },
    #[error("this server requires `authorization: Bearer <token>` metadata")]
    NoCredentials,
    #[error("the `authorization` metadata must be `Bearer <token>`")]
    MalformedCredentials,
    /// `authorization` came more than once: which one would be checked is a
    /// guess (RFC 9110 §5.3: a field that is not a list appears once).
    #[error("the `authorization` metadata was sent {count} times; send one `Bearer <token>`")]
    RepeatedCredentials { count: usize },
    #[error(
        "the bearer token is not accepted; it must be listed in the server's {ENV_AUTH_TOKENS_FILE}"
    )]
    UnknownToken,
    #[error("this bearer token may not post as the given author; post as the token's own author")]
    NotTokenAuthor,
    #[error("the bearer token was revoked")]
    TokenRevoked,
    /// A malformed or repeated opt-in header of `ReadMessages`
    /// ([`crate::core::resume`]).
    #[error(transparent)]
    BadReadOptions(#[from] BadReadOptions),
    /// The call's `grpc-timeout` passed before it completed (gRPC
    /// PROTOCOL-HTTP2.md, "Timeout").
    #[error("{DEADLINE_MESSAGE}")]
    DeadlineExceeded,
    /// A `grpc-timeout` that is not 1–8 digits and one unit of H, M, S, m,
    /// u or n (PROTOCOL-HTTP2.md); `got` is quoted.
    /// INTERNAL, as grpc-go answers it.
    #[error(
        "malformed grpc-timeout {got}: it must be 1 to 8 digits and one unit of \
         H, M, S, m, u or n (gRPC PROTOCOL-HTTP2.md)"
    )]
    MalformedTimeout { got: String },
    /// `grpc-timeout` came `count` times. INTERNAL, as a malformed one.
    #[error("grpc-timeout was sent {count} times; send it once")]
    RepeatedTimeout { count: usize },
    /// A request whose `:method` is not POST; `method` is quoted.
    #[error("invalid gRPC request method {method}: gRPC calls are POST (gRPC PROTOCOL-HTTP2.md)")]
    NotPost { method: String },
    /// A request whose `content-type` is not gRPC's; `got` is quoted, or
    /// `none`.
    #[error(
        "invalid gRPC request content-type {got}: gRPC requests are application/grpc \
         (gRPC PROTOCOL-HTTP2.md); this port speaks only gRPC"
    )]
    NotGrpcContentType { got: String },
    /// A unary or server-streaming call whose request stream held a second
    /// message (grpc-go and grpc-java answer UNIMPLEMENTED, statuscodes.md).
    #[error(
        "request cardinality violation: this method takes exactly one request message, \
         and a second one started"
    )]
    SecondRequestMessage,
    /// The same, for a request stream that ended with no message.
    #[error(
        "request cardinality violation: this method takes exactly one request message, \
         and the request ended without one"
    )]
    NoRequestMessage,
    /// The request message of a call that takes one did not end within the
    /// connection's handshake bound: a caller that sends headers and part
    /// of a message, then nothing, would otherwise hold its call (and a
    /// `SendMessage` admission permit) for as long as it keeps the
    /// connection alive.
    #[error(
        "the request message did not arrive within {}s ({ENV_HANDSHAKE_TIMEOUT_MS}); \
         send the whole request, then end the request stream",
        .within.as_secs_f64()
    )]
    RequestNotArrived { within: std::time::Duration },
    /// The caller reset the call (RST_STREAM, whatever its code) or its
    /// connection failed before its request message ended. Nobody reads the
    /// answer. ABORTED, never CANCELLED: tonic's codec takes CANCELLED for
    /// the end of the request body, and would run the handler.
    #[error("the caller reset the call before its request message ended")]
    CallerReset,
    /// This server's HTTP/2 layer reset the request stream for the caller's
    /// error (a malformed request, RFC 9113 §8.1.1, such as a
    /// `content-length` its DATA frames do not match). `code` is the one
    /// gRPC maps that RST_STREAM's reason to (grpc/grpc
    /// `doc/PROTOCOL-HTTP2.md`, "Errors": `PROTOCOL_ERROR` → INTERNAL),
    /// which the caller sees; `reset` is h2's description. Never CANCELLED,
    /// as above.
    #[error("the server reset the stream: {reset}")]
    StreamReset { code: Code, reset: String },
    /// `grpc.health.v1.Health` asked about a service it does not know
    /// (health.proto: `Check` answers NOT_FOUND).
    #[error("unknown service {}; grpc.reflection lists the services", quote(.service))]
    UnknownHealthService { service: String },
    /// A reflection request with no `message_request` set.
    #[error("ServerReflectionRequest has no message_request; set one of its fields")]
    EmptyReflectionRequest,
    /// A reflection message that did not survive re-encoding between v1 and
    /// v1alpha (their wire formats are identical; this is a bug).
    #[error("reflection transcoding failed: {0}")]
    ReflectionTranscode(#[from] prost::DecodeError),
}

/// `grpc-message` of a call that ran past its `grpc-timeout`.
pub(crate) const DEADLINE_MESSAGE: &str =
    "deadline exceeded (grpc-timeout) before the call completed";

/// The variable that sets the limit on `field`.
fn limit_env(field: Field) -> &'static str {
    match field {
        Field::Author => ENV_MAX_AUTHOR_BYTES,
        Field::Text => ENV_MAX_TEXT_BYTES,
    }
}

impl From<ShuttingDown> for ServiceError {
    fn from(_: ShuttingDown) -> Self {
        Self::ShuttingDown
    }
}

impl From<PublishError> for ServiceError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::ShuttingDown(_) => Self::ShuttingDown,
            PublishError::State(e) => Self::State(e),
            PublishError::Broker(e) => Self::Broker(e),
            PublishError::NotLoaded { broker } => Self::BrokerNotLoaded { broker },
        }
    }
}

impl From<SubscribeError> for ServiceError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::ShuttingDown(_) => Self::ShuttingDown,
            SubscribeError::Full { max } => Self::TooManySubscribers { max },
        }
    }
}

impl ServiceError {
    pub fn from_disconnect(d: Disconnect, capacity: usize) -> Self {
        match d {
            Disconnect::Slow => Self::FellBehind { capacity },
            Disconnect::Shutdown => Self::ShuttingDown,
            Disconnect::HistoryLost => Self::HistoryLost,
        }
    }

    /// The gRPC status code the caller gets.
    pub fn code(&self) -> Code {
        match self {
            Self::FieldTooLong(_)
            | Self::BadReadOptions(_)
            | Self::EmptyReflectionRequest
            | Self::NotGrpcContentType { .. } => Code::InvalidArgument,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::SecondRequestMessage | Self::NoRequestMessage => Code::Unimplemented,
            Self::RequestNotArrived { .. } => Code::DeadlineExceeded,
            Self::UnknownHealthService { .. } => Code::NotFound,
            Self::CallerReset => Code::Aborted,
            Self::StreamReset { code, .. } => match code {
                Code::Cancelled => Code::Aborted,
                code => *code,
            },
            Self::ReflectionTranscode(_)
            | Self::MalformedTimeout { .. }
            | Self::RepeatedTimeout { .. }
            | Self::NotPost { .. } => Code::Internal,
            Self::FellBehind { .. } | Self::TooManySubscribers { .. } | Self::Overloaded { .. } => {
                Code::ResourceExhausted
            }
            Self::ShuttingDown
            | Self::State(_)
            | Self::HistoryLost
            | Self::BrokerNotLoaded { .. }
            | Self::Broker(_) => Code::Unavailable,
            Self::NoCredentials | Self::MalformedCredentials | Self::RepeatedCredentials { .. } => {
                Code::Unauthenticated
            }
            Self::UnknownToken | Self::NotTokenAuthor | Self::TokenRevoked => {
                Code::PermissionDenied
            }
        }
    }

    /// The refusal as a complete gRPC response, for tower layers that answer
    /// before the service is called.
    pub fn into_http(self) -> http::Response<Body> {
        Status::from(self).into_http()
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_proto::limits::Limits;
    use messenger_proto::pb::SendMessageRequest;

    #[test]
    fn an_oversized_field_is_invalid_argument_naming_field_and_variable() {
        let limits = Limits {
            max_author_bytes: 3,
            max_text_bytes: 5,
        };
        let request = SendMessageRequest {
            author: "ab".into(),
            text: "123456".into(),
        };
        let status = Status::from(ServiceError::from(limits.check(&request).unwrap_err()));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            format!("`text` is 6 bytes; the limit is 5 bytes ({ENV_MAX_TEXT_BYTES})")
        );
    }

    #[test]
    fn a_failed_request_body_is_never_answered_cancelled() {
        // tonic's codec takes CANCELLED for the end of the request body.
        assert_eq!(ServiceError::CallerReset.code(), Code::Aborted);
        let reset = |code| {
            Status::from(ServiceError::StreamReset {
                code,
                reset: "h2 protocol error: stream error sent by user".into(),
            })
        };
        assert_eq!(reset(Code::Internal).code(), Code::Internal);
        assert_eq!(reset(Code::Cancelled).code(), Code::Aborted);
        assert!(
            reset(Code::Internal)
                .message()
                .starts_with("the server reset the stream: h2 protocol error")
        );
    }

    #[test]
    fn refusals_name_the_server_variables_only() {
        let shed = Status::from(ServiceError::Overloaded { max: 7 });
        assert_eq!(shed.code(), Code::ResourceExhausted);
        assert!(
            shed.message().contains(ENV_MAX_CONCURRENT_SENDS),
            "{shed:?}"
        );
        let unknown = Status::from(ServiceError::UnknownToken);
        assert_eq!(unknown.code(), Code::PermissionDenied);
        assert!(
            unknown.message().contains(ENV_AUTH_TOKENS_FILE),
            "{unknown:?}"
        );
        assert!(!unknown.message().contains("CLIENT"), "{unknown:?}");
    }
}
