//! One `/events` stream's own subscription: a `ReadMessages` call of its own
//! (offsets and trace context asked for), resumed through the server's
//! `messenger-since` by the same [`Resumer`] as the client's main stream.
//!
//! Invariants:
//! - **Registered before answered.** [`Backend::tail`] returns only once the
//!   server sent the response headers (the subscription is registered), so an
//!   `/events` response that started has missed nothing after it; a server
//!   that never answers is a timeout after the send deadline.
//! - **Exact resume.** Given a position, the first request carries
//!   `messenger-since`; history replays every message after it, none twice
//!   (the [`Resumer`] drops anything at or below the position). A resume
//!   history cannot cover is one [`TailEvent::Gap`] with what is known of its
//!   size; after a new epoch the stream is re-opened from the epoch's start,
//!   so nothing accepted since the loss is skipped.
//! - **Never the course buffer.** Messages go to this tail's queue only.
//! - **Bounded memory per tail and in total.** A tail's queue holds at most
//!   `queue` events and `queue_bytes` bytes of messages, and all tails'
//!   queues together at most their [`QueuePool`]'s bytes; a queued message
//!   holds its bytes from both until the browser's side takes it. What the
//!   server sent and the reader has not read yet is bounded by the stream's
//!   HTTP/2 window ([`crate::backend::Windows`]).
//! - **The slow-consumer policy.** Live, a reader task drains the gRPC
//!   stream into the queue and never waits on the browser (`try_send`,
//!   as the server's fan-out does); a full queue (events, its bytes or the
//!   pool's) cuts the tail ([`Tail::cut`], [`Cut::Behind`] or [`Cut::Pool`]).
//!   A replay from history is read at the browser's pace instead (a burst
//!   faster than any browser, which must not cut it), but a browser that
//!   leaves no room for `stall` is cut ([`Cut::Stalled`]). A cut frees the
//!   queue and the subscription (its window) at once, even if the browser
//!   never reads again; what the browser has not read of its response, and
//!   its place under the stream cap, stay until it closes (as the server
//!   keeps a cut stream's place). Every cut is counted, and the browser's
//!   reconnect resumes where it stopped. Tails
//!   use a connection of their own ([`crate::app`]), so none of this touches
//!   the course stream's.
//! - The reader stops when the receiver is dropped (the browser left), when
//!   the server ends the stream, or when cut; nothing outlives the tail.

mod queue;

pub use queue::{Cut, QueuePool};

use super::resume::{Gap, Headers, Received, ResumeCounters, Resumer};
use super::{Backend, BackendError, to_buffered};
use crate::buffer::BufferedMessage;
use crate::trim::Trim;
use messenger_proto::TRACE_CONTEXT_METADATA;
use messenger_proto::pb::ServerMessageResponse;
use metrics::Counter;
use queue::{Ends, Queue, Receiver, Refused};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::{Request, Streaming};

/// Re-openings after a new epoch before giving up (each one means the epoch
/// changed again between two requests).
const MAX_REOPEN: usize = 3;

/// What a tail delivers, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// The subscription is registered: the position a resume would start
    /// from (the head offset, or the one asked for when recovered).
    Open {
        epoch: String,
        offset: u64,
        recovered: Option<bool>,
    },
    /// The position after the gap (the new head, or `<new epoch>:0`).
    Gap {
        epoch: String,
        offset: u64,
        gap: Gap,
    },
    Message {
        epoch: String,
        offset: u64,
        message: BufferedMessage,
        /// The sender's W3C trace context, when the message carries one.
        traceparent: Option<String>,
    },
}

impl TailEvent {
    /// What a message holds in the queue, for its byte budget (the other
    /// events are small and once per stream: 0).
    fn bytes(&self) -> usize {
        match self {
            Self::Message {
                epoch,
                message,
                traceparent,
                ..
            } => {
                let fields = message.author.len() + message.text.len() + message.send_time.len();
                fields + epoch.len() + traceparent.as_ref().map_or(0, String::len) + 64
            }
            Self::Open { .. } | Self::Gap { .. } => 0,
        }
    }
}

/// A registered subscription feeding a bounded queue.
pub struct Tail {
    events: Receiver,
    /// Cancelled when the reader cut this tail ([`Cut`]): the queue's
    /// remaining events are to be dropped, not sent.
    pub cut: CancellationToken,
    /// Why, once cut.
    cause: Arc<OnceLock<Cut>>,
}

/// How a tail is opened and bounded.
pub struct TailOptions {
    /// Resume after this `(epoch, offset)`; `None`: live from now.
    pub since: Option<(String, u64)>,
    /// Events queued for the browser before it counts as too slow.
    pub queue: usize,
    /// Bytes of messages queued before it counts as too slow.
    pub queue_bytes: usize,
    /// The bytes all tails' queues share.
    pub pool: QueuePool,
    /// How long a replay waits for room in a full queue before the tail is cut.
    pub stall: Duration,
    /// Asked for once a cut tail's queue is freed.
    pub trim: Trim,
    pub counters: ResumeCounters,
    /// Tails cut for falling behind.
    pub cut: Counter,
}

impl Backend {
    /// Subscribes (resuming when `since` is given) and returns once the
    /// server registered the subscription.
    pub async fn tail(&self, options: TailOptions) -> Result<Tail, BackendError> {
        let TailOptions {
            since,
            queue,
            queue_bytes,
            pool,
            stall,
            trim,
            counters,
            cut: cut_counter,
        } = options;
        let mut resumer = match since {
            Some((epoch, offset)) => Resumer::since(epoch, offset, counters),
            None => Resumer::with_counters(counters),
        };
        let asked = resumer.position().is_some();
        let (queue, events) = queue::queue(queue, queue_bytes, pool, stall);
        let mut first = true;
        let mut reopened = 0;
        let stream = loop {
            let mut request = Request::new(());
            resumer.request_metadata(request.metadata_mut());
            request
                .metadata_mut()
                .insert(TRACE_CONTEXT_METADATA, MetadataValue::from_static("1"));
            self.authorize(request.metadata_mut());
            let mut client = self.client.clone();
            // Bounded like a send: a server that takes the call and never
            // answers must not hold an /events request (it has no deadline).
            let response = tokio::time::timeout(self.send_timeout, client.read_messages(request))
                .await
                .map_err(|_| BackendError::SubscribeTimeout(self.send_timeout))?
                .map_err(|s| match self.classify(s) {
                    BackendError::Timeout(after) => BackendError::SubscribeTimeout(after),
                    other => other,
                })?;
            let headers = resumer.on_headers(response.metadata());
            let gap = resumer.take_gap();
            let recovered = (first && asked).then_some(gap.is_none());
            let (epoch, offset) = resumer.position().map_or((String::new(), 0), owned);
            if first {
                first = false;
                let open = TailEvent::Open {
                    epoch: epoch.clone(),
                    offset,
                    recovered,
                };
                queue.push_bare(open);
            }
            if let Some(gap) = gap {
                let event = TailEvent::Gap { epoch, offset, gap };
                queue.push_bare(event);
            }
            if headers != Headers::Again || reopened == MAX_REOPEN {
                break response.into_inner();
            }
            reopened += 1;
        };
        let cut = CancellationToken::new();
        let cause = Arc::new(OnceLock::new());
        let ends = Ends {
            cut: cut.clone(),
            cause: Arc::clone(&cause),
            counter: cut_counter,
            trim,
        };
        tokio::spawn(read(stream, resumer, queue, ends));
        Ok(Tail { events, cut, cause })
    }
}

impl Tail {
    /// The next event, in stream order; `None` once the subscription ended.
    /// What it held goes back to the queue's budgets.
    pub async fn recv(&mut self) -> Option<TailEvent> {
        self.events.recv().await
    }

    /// Why the tail was cut, once it was.
    pub fn cause(&self) -> Option<Cut> {
        self.cause.get().copied()
    }
}

fn owned((epoch, offset): (&str, u64)) -> (String, u64) {
    (epoch.to_owned(), offset)
}

/// Drains `stream` into the queue until the receiver leaves, the stream
/// ends, or the tail is cut.
async fn read(
    mut stream: Streaming<ServerMessageResponse>,
    mut resumer: Resumer,
    queue: Queue,
    ends: Ends,
) {
    loop {
        let next = tokio::select! {
            () = queue.closed() => return,
            next = stream.message() => next,
        };
        let m = match next {
            Ok(Some(m)) => m,
            Ok(None) => return tracing::debug!("server ended an /events subscription"),
            Err(status) => {
                return tracing::debug!(code = ?status.code(), message = status.message(), "an /events subscription broke");
            }
        };
        let Received::Keep { replayed, .. } = resumer.on_message(m.offset) else {
            continue;
        };
        let (epoch, offset) = resumer.position().map_or((String::new(), 0), owned);
        let traceparent = Some(m.traceparent.clone()).filter(|t| !t.is_empty());
        let event = TailEvent::Message {
            epoch,
            offset,
            message: to_buffered(m),
            traceparent,
        };
        let queued = if replayed {
            queue.put(event).await
        } else {
            queue.offer(event)
        };
        match queued {
            Ok(()) => {}
            Err(Refused::Left) => return,
            Err(Refused::Cut(cause)) => return ends.cut(cause, &queue, offset),
        }
    }
}
