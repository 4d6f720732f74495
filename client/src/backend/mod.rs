//! The client's side of the gRPC contract: the only module tree that sees
//! proto types and tonic's channel. One module per concern:
//!
//! - [`channel`]: the [`Backend`] handle both paths share: one lazily
//!   connecting channel (TLS, HTTP/2 keepalive, no message-size cap on the
//!   stream) and the bearer token both RPCs carry.
//! - [`send`]: the send path, `SendMessage` under a deadline, with its CLIENT
//!   span, propagated trace context and `grpc_client_*` metrics. It is what
//!   the HTTP routes call, through the [`MessageSender`] trait.
//! - [`subscribe`]: the subscription loop: one `ReadMessages` stream kept
//!   open with capped, jittered backoff between attempts; the "subscribed"
//!   and credentials-refusal state the routes read.
//! - [`receive`]: one streamed message into the [`Buffer`](crate::buffer::Buffer),
//!   with its metrics and CONSUMER `receive` span.
//! - [`resume`]: where the stream resumes after a break (epoch, last offset
//!   buffered), dedup, and the one warning per gap.
//! - [`tail`]: one `/events` stream's own `ReadMessages` subscription,
//!   resumed by the same [`resume::Resumer`], feeding a queue bounded in
//!   events and bytes, per stream and over all of them.
//!
//! Invariants: the bearer token is sensitive metadata and nothing here logs
//! it; every failure a caller sees is a [`BackendError`], mapped to an HTTP
//! status in one place ([`crate::error`]).

pub mod channel;
pub mod receive;
pub mod resume;
pub mod send;
pub mod subscribe;
pub mod tail;

pub use channel::{Backend, Keepalive, Windows};
pub use receive::to_buffered;
pub use subscribe::Subscriber;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tonic::Code;

/// Why a call to the server failed, as the HTTP routes see it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No connection to the server (refused, reset, TLS failed).
    #[error("messenger server at {addr} is unreachable: {message}")]
    Unavailable { addr: String, message: String },
    /// The server answered `UNAVAILABLE` itself: shutting down, or its
    /// broker is down (its message names the broker).
    #[error("messenger server at {addr} is unavailable: {message}")]
    ServerUnavailable { addr: String, message: String },
    /// `SendMessage` passed its deadline (ours or the server's): the server
    /// may have accepted the message, so a blind retry may duplicate it.
    #[error(
        "messenger server did not answer within {0:?} ({env}); the send may or may not have \
         been accepted: check the stream before sending it again",
        env = crate::config::ENV_SEND_TIMEOUT_MS
    )]
    Timeout(Duration),
    /// A `ReadMessages` subscription was not registered within the deadline.
    #[error(
        "messenger server did not register the subscription within {0:?} ({env}); retry shortly",
        env = crate::config::ENV_SEND_TIMEOUT_MS
    )]
    SubscribeTimeout(Duration),
    #[error("messenger server answered {code:?}: {message}")]
    Rejected { code: Code, message: String },
    #[error("messenger server returned no valid sendTime")]
    BadResponse,
}

impl BackendError {
    /// The gRPC code this outcome stands for (for spans and metrics).
    pub fn code(&self) -> Code {
        match self {
            Self::Timeout(_) | Self::SubscribeTimeout(_) => Code::DeadlineExceeded,
            Self::Unavailable { .. } | Self::ServerUnavailable { .. } => Code::Unavailable,
            Self::Rejected { code, .. } => *code,
            Self::BadResponse => Code::Internal,
        }
    }
}

/// What a `SendMessage` call resolves to: the message's `sendTime` as RFC
/// 3339 UTC with 9 fractional digits, byte-for-byte what the stream shows.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<String, BackendError>> + Send + 'a>>;

/// The server as the HTTP routes need it: one `SendMessage` call. [`Backend`]
/// is the real one; the route tests answer from memory, so the router is
/// tested without a socket.
pub trait MessageSender: Send + Sync + 'static {
    /// Sends one message; resolves once the server has accepted or refused it.
    fn send(&self, author: String, text: String) -> SendFuture<'_>;
}
