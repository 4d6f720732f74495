//! The response stream of one `ReadMessages` call.
//!
//! It writes each message's shared encoding
//! ([`Message::encoded`](crate::core::history::Message::encoded)) as a [`Frame`]
//! that holds the delivery's share of the message: no per-subscriber protobuf
//! encoding, no allocation for a plain subscriber, and no reference count
//! touched beyond the one the queue already took. Its counters are added to the shared metrics once per chunk
//! tonic hands to hyper (when the queue runs dry, when the chunk reaches
//! [`STREAM_YIELD_BYTES`], and when the stream ends), so a chunk hyper holds
//! for a peer that never reads is counted like any other; the delivery latency
//! histogram still gets one sample per live delivery, measured against a
//! clock read that the messages of a batch share (they go to h2 together).
//!
//! Writes are coalesced, as NATS flushes a subscriber's pending data with one
//! `writev` once it has handled what its publishers sent: a stream about to
//! start a batch smaller than a full one
//! ([`BATCH_MAX`](crate::core::hub::BATCH_MAX)) first yields to the
//! scheduler, once ([`yield_once`]). Tokio wakes a yielded task only after
//! its worker has run the tasks already ready and polled the I/O driver, so
//! the publishes those carry join the batch and go out in the same write.
//! The cost is one more poll per batch; on an idle worker the wait is one
//! poll of the driver. Without it, a faster writer took smaller batches and
//! made more system calls per message (tests/bench/README.md).
//!
//! A stream the server drains because it is shutting down ends UNAVAILABLE
//! with the trailer `messenger-last-offset` when its caller asked for
//! offsets ([`LAST_OFFSET_METADATA`]): the hub no longer accepts messages,
//! so the caller knows it holds everything of the epoch.

use crate::core::hub::{Delivery, Disconnect, Subscription};
use crate::core::resume::ReadOptions;
use crate::grpc::auth::Principal;
use crate::grpc::error::ServiceError;
use crate::ops::metrics::{DisconnectReason, Metrics};
use messenger_proto::LAST_OFFSET_METADATA;
use messenger_proto::frame::{Frame, STREAM_YIELD_BYTES};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio_stream::Stream;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Code, Status};

/// The response stream of one `ReadMessages` call. Dropping it (the RPC was
/// cancelled or the connection died) unsubscribes at once.
pub(crate) struct MessageStream {
    subscription: Subscription,
    capacity: usize,
    metrics: Arc<Metrics>,
    /// The subscriber asked for `traceparent` on each message.
    wants_trace: bool,
    /// The subscriber asked for `offset` on each message.
    wants_offsets: bool,
    /// Offset of the last message written, or the head at registration;
    /// told to a caller that asked for offsets when a drain ends the stream.
    last_offset: u64,
    /// With token auth: the subscriber's token, re-checked after each reload.
    /// Boxed: inline it would add 88 bytes to every stream, with or without
    /// token auth (tests/bench/README.md, idle footprint).
    principal: Option<Box<Principal>>,
    started: Instant,
    /// The caller's deadline: a stream dropped at or past it was ended by
    /// the deadline ([`CallDeadline`](crate::grpc::status_spec::CallDeadline)), not cancelled.
    deadline: Option<Instant>,
    /// Set once the stream has ended with a status.
    end: Option<Code>,
    /// It ended because the broker's history was lost (counted as `error`).
    history_lost: bool,
    /// Deliveries not yet added to the shared counters.
    unflushed: Unflushed,
    /// This batch has yielded once to let more messages join it.
    coalesced: bool,
    /// The write time of the current batch (its messages go to h2 together)
    /// and the deliveries it has served; cleared with the batch.
    now: Option<(Instant, u32)>,
}

/// Deliveries read from the clock once, at most this many apart.
const CLOCK_EVERY: u32 = 64;

/// Per-stream counts, added to the shared counters once per chunk.
#[derive(Default)]
struct Unflushed {
    /// Messages written (`grpc_server_msg_sent_total`).
    sent: u64,
    /// Live deliveries (`messenger_messages_delivered_total`).
    live: u64,
    /// Replayed deliveries (`messenger_replayed_messages_total`).
    replayed: u64,
    /// Bytes of the chunk these deliveries went into, as tonic counts them
    /// (each message's encoding and its 5-byte gRPC prefix).
    bytes: usize,
}

/// The gRPC length prefix tonic writes before each message (PROTOCOL-HTTP2.md).
const GRPC_PREFIX_BYTES: usize = 5;

impl MessageStream {
    /// The stream of `subscription`, whose queue holds `capacity` messages,
    /// with the extensions `options` asked for.
    pub(super) fn new(
        subscription: Subscription,
        capacity: usize,
        metrics: Arc<Metrics>,
        options: &ReadOptions,
        principal: Option<Principal>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            last_offset: subscription.head(),
            subscription,
            capacity,
            metrics,
            wants_trace: options.wants_trace,
            wants_offsets: options.wants_offsets,
            principal: principal.map(Box::new),
            started: Instant::now(),
            deadline,
            end: None,
            history_lost: false,
            unflushed: Unflushed::default(),
            coalesced: false,
            now: None,
        }
    }

    fn deliver(&mut self, d: Delivery) -> Frame {
        let Delivery {
            message: m,
            trace,
            replayed,
        } = d;
        self.unflushed.sent += 1;
        self.last_offset = m.offset;
        let traceparent = if replayed {
            // Acceptance-to-write latency would measure the outage, not the
            // fan-out: replays are counted on their own.
            self.unflushed.replayed += 1;
            self.wants_trace.then(|| m.traceparent.clone()).flatten()
        } else {
            let latency = self.now(m.accepted_at).duration_since(m.accepted_at);
            self.metrics.delivery_latency.record(latency);
            self.unflushed.live += 1;
            trace
                .as_ref()
                .and_then(|t| t.deliver(self.subscription.id(), latency, self.wants_trace))
        };
        let offset = if self.wants_offsets { m.offset } else { 0 };
        // The delivery's share of the message moves into the frame.
        Frame::shared(m)
            .with_traceparent(traceparent)
            .with_offset(offset)
    }

    /// This batch's write time for a message accepted at `accepted`: the
    /// clock is read again every [`CLOCK_EVERY`] deliveries, and for a
    /// message accepted after the last read.
    fn now(&mut self, accepted: Instant) -> Instant {
        match &mut self.now {
            Some((now, n)) if *n < CLOCK_EVERY && *now >= accepted => {
                *n += 1;
                *now
            }
            slot => slot.insert((Instant::now(), 1)).0,
        }
    }

    /// Ends the batch: adds its counts to the shared counters.
    fn flush(&mut self) {
        self.now = None;
        let u = std::mem::take(&mut self.unflushed);
        if u.sent > 0 {
            self.metrics.read.msg_sent.increment(u.sent);
        }
        if u.live > 0 {
            self.metrics.delivered.increment(u.live);
        }
        if u.replayed > 0 {
            self.metrics.replayed.increment(u.replayed);
        }
    }
}

impl Stream for MessageStream {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        if !std::mem::take(&mut self.coalesced) && self.subscription.next_batch_could_grow() {
            self.flush();
            self.coalesced = true;
            yield_once(cx);
            return Poll::Pending;
        }
        // Checked on every poll, not only with a message: a reload of the
        // tokens file wakes every stream (`Hub::wake_all`), so a revoked
        // caller's stream ends on a quiet chat too.
        let revoked = self.principal.as_mut().is_some_and(|p| !p.still_valid());
        let received = match revoked {
            true => None,
            false => match self.subscription.poll_recv(cx) {
                Poll::Pending => {
                    self.flush();
                    return Poll::Pending;
                }
                Poll::Ready(received) => Some(received),
            },
        };
        let (error, drained) = match received {
            None => (ServiceError::TokenRevoked, false),
            Some(Ok(delivery)) => {
                let frame = self.deliver(delivery);
                // At this size tonic ends the chunk and hands it to hyper,
                // which may never poll this stream again (a peer that never
                // opens its window): what the chunk carries is counted now,
                // as the latency histogram already did per delivery.
                self.unflushed.bytes += frame.encoded_len() + GRPC_PREFIX_BYTES;
                if self.unflushed.bytes >= STREAM_YIELD_BYTES {
                    self.flush();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Some(Err(disconnect)) => (
                ServiceError::from_disconnect(disconnect, self.capacity),
                disconnect == Disconnect::Shutdown,
            ),
        };
        self.flush();
        self.end = Some(error.code());
        self.history_lost = matches!(error, ServiceError::HistoryLost);
        let mut status = Status::from(error);
        if drained && self.wants_offsets {
            status.metadata_mut().insert(
                LAST_OFFSET_METADATA,
                AsciiMetadataValue::from(self.last_offset),
            );
        }
        Poll::Ready(Some(Err(status)))
    }
}

/// Has the scheduler wake this task once it has run the tasks already ready
/// and polled the I/O driver (`tokio::task::yield_now`; outside a Tokio
/// runtime, at once). The first poll of `yield_now` hands the waker over
/// and is always pending.
fn yield_once(cx: &mut Context<'_>) {
    let yielded = pin!(tokio::task::yield_now());
    let _pending = yielded.poll(cx);
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.flush();
        let code = match (self.end, self.subscription.ended_by()) {
            (Some(code), _) => code,
            // The hub ended it (cut off as slow, shut down, history lost),
            // but the stream never took the end: a peer that stopped reading
            // is never polled again. The hub's status, and its reason
            // counted once (a slow cut was counted when it was cut).
            (None, Some(disconnect)) => {
                self.history_lost = disconnect == Disconnect::HistoryLost;
                ServiceError::from_disconnect(disconnect, self.capacity).code()
            }
            (None, None) => {
                // The caller went away, or the deadline timer ended the
                // stream: either way the caller ended it (the disconnect
                // reason), but the status differs. A caller that resets at
                // its own deadline before our timer fires counts as
                // cancelled, as in grpc-go (which context error came first).
                self.metrics.disconnected(DisconnectReason::Cancelled, 1);
                match self.deadline {
                    Some(at) if Instant::now() >= at => Code::DeadlineExceeded,
                    _ => Code::Cancelled,
                }
            }
        };
        if code == Code::Unavailable {
            let reason = if self.history_lost {
                DisconnectReason::Error
            } else {
                DisconnectReason::Shutdown
            };
            self.metrics.disconnected(reason, 1);
        }
        self.metrics.read.handled(code);
        self.metrics
            .read
            .handling
            .record(self.started.elapsed().as_secs_f64());
    }
}
