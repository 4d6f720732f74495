//! Request cardinality: a method that takes exactly one request message
//! (unary and server-streaming) gets `UNIMPLEMENTED` for zero or several
//! (grpc/grpc `doc/statuscodes.md`, "Request cardinality violation"), before
//! its handler runs: tonic decodes the whole request body first.
//!
//! The request stream must also end within a bound (the connection's
//! handshake bound, `MESSENGER_HANDSHAKE_TIMEOUT_MS`), or the call ends
//! `DEADLINE_EXCEEDED` naming it: otherwise a caller that sends headers and
//! part of a message, then nothing, holds the call, and for `SendMessage` an
//! admission permit, for as long as its connection lives.
//!
//! A request body that fails (the caller's reset, a dead connection, or a
//! reset by this server's HTTP/2 layer for the caller's protocol error) is
//! answered so that the handler never runs and the tally counts the code
//! the caller saw ([`OneMessage::failed`]).

use crate::grpc::error::ServiceError;
use crate::grpc::tally::Claim;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tonic::{Code, Status};

/// Services on our port whose every method takes exactly one request.
/// Reflection's `ServerReflectionInfo` is a bidirectional stream: not here.
const ONE_REQUEST_SERVICES: [&str; 2] = [messenger_proto::SERVICE_NAME, "grpc.health.v1.Health"];

/// Whether the method at `path` (`/package.Service/Method`) takes one request.
pub(super) fn takes_one_request(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, _)| ONE_REQUEST_SERVICES.contains(&service))
}

/// The gRPC length prefix: compressed flag and a big-endian u32.
const PREFIX: usize = 5;

/// A request body that fails with `UNIMPLEMENTED` when a second message
/// starts, or when it ends cleanly with none. A partial message at the end
/// is left to the codec (`INTERNAL`, as the table has it for unparsable input).
pub(super) struct OneMessage<B> {
    inner: B,
    /// Prefix bytes of the message being read.
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Payload bytes still to skip of the current message.
    payload_left: u64,
    /// Messages whose prefix has started.
    started: u32,
    /// The request stream must end by then; `None` once it has.
    arrive_by: Option<(Pin<Box<Sleep>>, Duration)>,
    /// A messenger call's claim, told when the caller resets the call.
    claim: Option<Claim>,
}

impl<B> OneMessage<B> {
    /// `inner`, whose request stream must end within `within`; `claim`,
    /// a messenger call's ([`Claim::caller_reset`]).
    pub(super) fn new(inner: B, within: Duration, claim: Option<Claim>) -> Self {
        Self {
            inner,
            prefix: [0; PREFIX],
            prefix_len: 0,
            payload_left: 0,
            started: 0,
            arrive_by: Some((Box::pin(tokio::time::sleep(within)), within)),
            claim,
        }
    }

    /// Walks the framing of `data`; `Err` once a second message starts.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                data.advance(skip as usize);
                continue;
            }
            if self.prefix_len == 0 {
                self.started += 1;
                if self.started > 1 {
                    return Err(too_many());
                }
            }
            let take = (PREFIX - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data.advance(take);
            if self.prefix_len == PREFIX {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.payload_left = u64::from(len);
                self.prefix_len = 0;
            }
        }
        Ok(())
    }

    /// The answer to a request body that failed with `failed`, never
    /// `CANCELLED` (tonic's codec takes that for the end of the body, and
    /// would run the handler on a call that did not arrive whole):
    /// - this server's h2 reset the stream itself, for the caller's protocol
    ///   error: the code gRPC maps that RST_STREAM's reason to (tonic's
    ///   mapping, kept in `failed`), which the caller sees, so the tally
    ///   counts it ([`ServiceError::StreamReset`]);
    /// - anything else (the caller's RST_STREAM, whatever its code, or a
    ///   dead connection): the caller reset the call
    ///   ([`Claim::caller_reset`], [`ServiceError::CallerReset`]).
    fn failed(&self, failed: &Status) -> Status {
        if reset_by_us(failed) && failed.code() != Code::Cancelled {
            return ServiceError::StreamReset {
                code: failed.code(),
                reset: failed.message().to_owned(),
            }
            .into();
        }
        if let Some(claim) = &self.claim {
            claim.caller_reset();
        }
        ServiceError::CallerReset.into()
    }
}

/// Whether `failed` is an RST_STREAM this process's h2 sent (not one it
/// received, nor a GOAWAY or an I/O error), found in its source chain.
fn reset_by_us(failed: &Status) -> bool {
    std::iter::successors(Some(failed as &(dyn Error + 'static)), |&e| e.source())
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|h2| h2.is_reset() && h2.is_library())
}

fn too_many() -> Status {
    ServiceError::SecondRequestMessage.into()
}

fn none() -> Status {
    ServiceError::NoRequestMessage.into()
}

impl<B> Body for OneMessage<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.scan(data)
                {
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if this.started == 0 => Poll::Ready(Some(Err(none()))),
            Poll::Pending => {
                let Some((by, within)) = &mut this.arrive_by else {
                    return Poll::Pending;
                };
                if by.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let within = *within;
                this.arrive_by = None;
                Poll::Ready(Some(Err(ServiceError::RequestNotArrived { within }.into())))
            }
            Poll::Ready(Some(Err(failed))) => {
                this.arrive_by = None;
                Poll::Ready(Some(Err(this.failed(&failed))))
            }
            end => {
                this.arrive_by = None;
                end
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end must be polled, to see whether a message came.
        self.started > 0 && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    // A runtime: the body's arrival bound is a tokio timer.
    #[tokio::test]
    async fn one_message_in_any_split_passes_and_a_second_is_refused() {
        let one = framed(b"hello");
        for split in 0..=one.len() {
            let mut body = OneMessage::new((), Duration::from_secs(10), None);
            assert!(body.scan(&one[..split]).is_ok());
            assert!(body.scan(&one[split..]).is_ok());
            assert_eq!(body.started, 1, "split at {split}");
        }
        let two = [one.clone(), framed(b"")].concat();
        let mut body = OneMessage::new((), Duration::from_secs(10), None);
        assert_eq!(
            body.scan(&two).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }

    #[test]
    fn which_methods_take_one_request() {
        assert!(takes_one_request("/mes_grpc.MessengerServer/SendMessage"));
        assert!(takes_one_request("/grpc.health.v1.Health/Watch"));
        assert!(!takes_one_request(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!takes_one_request("/nope"));
    }
}
