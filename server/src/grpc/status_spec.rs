//! The gRPC port's statuses for transport- and codec-level conditions, as the
//! table of grpc/grpc `doc/statuscodes.md` has them (grpc-go and C-core
//! answer the same). A tower layer around every service on the port, so the
//! rules hold for messenger, health and reflection alike.
//!
//! Where tonic 0.14 differs from the table, [`spec_status`] corrects it,
//! in this one place:
//! - a message larger than the receive limit: tonic says `OUT_OF_RANGE`, the
//!   table `RESOURCE_EXHAUSTED` ("Sent or received message was larger than
//!   configured limit"); the same for an over-limit response;
//! - the caller's deadline (`grpc-timeout`) passing before a unary answer:
//!   tonic's `Server` timer says `CANCELLED` "Timeout expired", the table
//!   `DEADLINE_EXCEEDED`. The port no longer runs that timer
//!   (`messenger_runtime::conn::serve_grpc` leaves deadlines to the service):
//!   [`Spec`] answers `DEADLINE_EXCEEDED` at the deadline itself;
//!
//! What tonic does not do, [`SpecLayer`] adds:
//! - **request cardinality** (zero or several messages where the method takes
//!   exactly one): `UNIMPLEMENTED` before the handler runs, so nothing of
//!   such a call is accepted ([`one_message`]). tonic would take the first of
//!   several and report zero as `INTERNAL`;
//! - **a bound on the request message's arrival**: a call that takes one
//!   request must end its request stream within the handshake bound, or it
//!   ends `DEADLINE_EXCEEDED` ([`one_message`]);
//! - **the deadline of a response stream**: past `grpc-timeout` a
//!   `ReadMessages` stream ends with `DEADLINE_EXCEEDED` (tonic enforces the
//!   deadline only until the response headers);
//! - **the request head's checks** ([`head`]), before the call runs, as
//!   grpc-go answers them: a method other than POST is HTTP 405 `INTERNAL`, a
//!   content-type that is not gRPC's HTTP 415 `INVALID_ARGUMENT`
//!   (PROTOCOL-HTTP2.md asks for the 415), a malformed `grpc-timeout` (not
//!   1–8 digits and one unit, or sent twice) `INTERNAL`, each naming what
//!   it got; a zero `grpc-timeout` (`0n`: the caller's deadline has passed)
//!   is `DEADLINE_EXCEEDED`. tonic ran all of these calls, the last two with
//!   no deadline.
//!
//! A messenger call that one of these rules (or tonic's codec, or
//! [`Admission`](crate::grpc::admission::Admission)) ends before its handler
//! runs is counted in `grpc_server_*` here ([`tally`](crate::grpc::tally)).
//!
//! And every `grpc-message` is bounded ([`bounded`]): caller input is quoted
//! by the one rule (`messenger_proto::quote`), also in tonic's message for an
//! unsupported `grpc-encoding` and in the name of an unknown method, and no
//! message exceeds [`bounded::MESSAGE_MAX_BYTES`].
//!
//! Already as specified, and tested: unknown method or service and an
//! unsupported `grpc-encoding` → `UNIMPLEMENTED`; a compressed flag without
//! `grpc-encoding`, a truncated message and unparsable protobuf →
//! `INTERNAL`; shutting down → `UNAVAILABLE`.

mod bounded;
mod head;
mod one_message;

use crate::grpc::error::{DEADLINE_MESSAGE, ServiceError};
use crate::grpc::tally::Tally;
use crate::ops::metrics::Metrics;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tonic::Code;
use tower::{Layer, Service};

/// Prefix of tonic's message for a message over the decoding limit.
const DECODED_TOO_LARGE: &str = "Error, decoded message length too large";
/// Prefix of tonic's message for a response over the encoding limit.
const ENCODED_TOO_LARGE: &str = "Error, encoded message length too large";
/// tonic's message when `grpc-timeout` passed before a unary answer.
const TIMEOUT_EXPIRED: &str = "Timeout expired";

/// The table's code (and message) for a status tonic produced, if it differs.
pub(crate) fn spec_status(code: Code, message: &str) -> Option<(Code, String)> {
    match code {
        Code::OutOfRange
            if message.starts_with(DECODED_TOO_LARGE) || message.starts_with(ENCODED_TOO_LARGE) =>
        {
            Some((Code::ResourceExhausted, message.to_owned()))
        }
        Code::Cancelled if message == TIMEOUT_EXPIRED => {
            Some((Code::DeadlineExceeded, DEADLINE_MESSAGE.to_owned()))
        }
        Code::Unimplemented => {
            bounded::requote_unsupported_encoding(message).map(|m| (Code::Unimplemented, m))
        }
        _ => None,
    }
}

/// Rewrites `grpc-status`/`grpc-message` in response headers or trailers,
/// and bounds the message.
fn correct(headers: &mut HeaderMap) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // tonic percent-encodes the message, spaces included (PROTOCOL-HTTP2.md).
    let message = headers
        .get("grpc-message")
        .map(|v| percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy())
        .unwrap_or_default();
    if let Some((code, message)) = spec_status(Code::from_i32(code), &message) {
        headers.insert("grpc-status", HeaderValue::from(code as i32));
        headers.insert("grpc-message", bounded::header_value(&message));
    } else if message.len() > bounded::MESSAGE_MAX_BYTES {
        let value = bounded::header_value(&message);
        headers.insert("grpc-message", value);
    }
}

/// tonic answers an unknown method with `UNIMPLEMENTED` and no message; say which.
fn name_unknown_method(headers: &mut HeaderMap, path: &str) {
    let unimplemented = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"12");
    if unimplemented && !headers.contains_key("grpc-message") {
        let value = bounded::header_value(&bounded::unknown_method(path));
        headers.insert("grpc-message", value);
    }
}

/// `error` as a whole response with HTTP status `http`: headers only, the
/// gRPC status in them.
fn status_response<RB>(
    http: http::StatusCode,
    error: ServiceError,
) -> http::Response<SpecBody<RB>> {
    let status = tonic::Status::from(error);
    // Encoded as PROTOCOL-HTTP2.md asks and no further (tonic also encodes
    // spaces), so `curl -v` shows it readably.
    let message = bounded::header_value(status.message());
    let (mut parts, ()) = status.into_http::<()>().into_parts();
    parts.headers.insert("grpc-message", message);
    parts.status = http;
    if http == http::StatusCode::METHOD_NOT_ALLOWED {
        parts
            .headers
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    let body = SpecBody {
        inner: None,
        deadline: None,
    };
    http::Response::from_parts(parts, body)
}

/// Puts [`Spec`] around the port's services.
#[derive(Clone)]
pub(crate) struct SpecLayer {
    /// How long a call that takes one request message may take to send it
    /// ([`one_message`]).
    pub(crate) request_within: Duration,
    /// Where a messenger call that ends before its handler is counted
    /// ([`tally`](crate::grpc::tally)).
    pub(crate) metrics: Arc<Metrics>,
}

impl<S> Layer<S> for SpecLayer {
    type Service = Spec<S>;

    fn layer(&self, inner: S) -> Spec<S> {
        Spec {
            inner,
            request_within: self.request_within,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct Spec<S> {
    inner: S,
    request_within: Duration,
    metrics: Arc<Metrics>,
}

impl<S, RB> Service<http::Request<tonic::body::Body>> for Spec<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<SpecBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (tally, claim) = match Tally::open(&self.metrics, &path) {
            Some((tally, claim)) => {
                request.extensions_mut().insert(claim.clone());
                (Some(tally), Some(claim))
            }
            None => (None, None),
        };
        let timeout = match head::check(&request) {
            Ok(timeout) => timeout,
            Err((http, error)) => {
                if let Some(tally) = tally {
                    tally.ended_with(error.code());
                }
                return Box::pin(async move { Ok(status_response(http, error)) });
            }
        };
        let deadline = timeout.map(|d| Instant::now() + d);
        let tally = tally.map(|t| t.with_deadline(deadline));
        if let Some(at) = deadline {
            request.extensions_mut().insert(CallDeadline(at));
        }
        let request = if one_message::takes_one_request(request.uri().path()) {
            let within = self.request_within;
            request.map(|body| {
                tonic::body::Body::new(one_message::OneMessage::new(body, within, claim))
            })
        } else {
            request
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = match deadline {
                None => response.await?,
                Some(at) => match tokio::time::timeout_at(at, response).await {
                    Ok(response) => response?,
                    Err(_) => {
                        let ok = http::StatusCode::OK;
                        let error = ServiceError::DeadlineExceeded;
                        if let Some(tally) = tally {
                            tally.ended_with(error.code());
                        }
                        return Ok(status_response(ok, error));
                    }
                },
            };
            correct(response.headers_mut());
            name_unknown_method(response.headers_mut(), &path);
            if let Some(tally) = tally {
                tally.ended(response.headers());
            }
            Ok(response.map(|inner| SpecBody {
                inner: Some(inner),
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            }))
        })
    }
}

/// The caller's deadline (`grpc-timeout` from the request's arrival), in the
/// request's extensions for a handler whose response body outlives the call
/// future: when [`SpecBody`] ends a body at the deadline it drops the
/// handler's stream, which can tell that end from a cancel by this instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallDeadline(pub(crate) Instant);

/// A response body with its trailers corrected and the caller's deadline kept.
#[derive(Debug)]
pub(crate) struct SpecBody<B> {
    /// `None` once the deadline ended the body.
    inner: Option<B>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> Body for SpecBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        correct(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    this.inner = None;
                    let mut trailers = HeaderMap::new();
                    trailers.insert(
                        "grpc-status",
                        HeaderValue::from(Code::DeadlineExceeded as i32),
                    );
                    trailers.insert("grpc-message", HeaderValue::from_static(DEADLINE_MESSAGE));
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                _ => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_statuses_are_corrected_by_the_table() {
        // The exact strings tonic 0.14 produces: a tonic upgrade that changes
        // them fails here rather than silently skipping the correction.
        let decoded = "Error, decoded message length too large: found 3145745 bytes, the limit is: 1114368 bytes";
        assert_eq!(
            spec_status(Code::OutOfRange, decoded).map(|s| s.0),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            spec_status(Code::Cancelled, "Timeout expired").map(|s| s.0),
            Some(Code::DeadlineExceeded)
        );
        assert_eq!(spec_status(Code::Cancelled, "client cancelled"), None);
        assert_eq!(
            spec_status(Code::OutOfRange, "offset 7 is past the end"),
            None
        );
    }
}
