//! `GET /events`: the chat as Server-Sent Events, for the page ([`crate::page`])
//! and any other reader.
//!
//! **Design: one upstream subscription per stream.** Each `/events`
//! connection opens its own `ReadMessages` on the server
//! ([`Backend::tail`]), so a resume is exact through the server's own
//! `messenger-since` for any gap its history covers, and the course buffer
//! (`/getAndFlushMessages`) is never touched. The price: every open stream
//! counts against the server's subscriber limit (`MESSENGER_MAX_SUBSCRIBERS`),
//! which [`MESSENGER_MAX_EVENT_STREAMS`](crate::config::ENV_MAX_EVENT_STREAMS)
//! bounds per client. (The alternative, a local fan-out from the client's own
//! stream with a bounded history, would cost the server nothing per browser
//! but resume only as far back as that local history.)
//!
//! Invariants:
//! - Each event has `id: <epoch>:<offset>`; a message's `data` is the JSON
//!   of `/getAndFlushMessages` (author, text, sendTime) plus `traceparent`
//!   when the message carries one. `event: ready` (first, with `retry:`) says
//!   where the stream stands; `event: gap` says a resume was not covered,
//!   with `missed` (a count, or null when unknown).
//! - The position is `Last-Event-ID`, else `?since=`; a malformed one is 400
//!   naming it, before anything is opened.
//! - At most `max` streams: one more is 503 with Retry-After. The stream is
//!   outside the API's request deadline; a keep-alive comment every
//!   [`KEEP_ALIVE`] keeps proxies and browsers from timing it out.
//! - `X-Accel-Buffering: no`; nothing compresses it.
//! - Shutdown ([`EventStreams::stop`]) ends every stream at once; a stream
//!   cut (falling behind live, or taking nothing from a full queue for
//!   [`STALL`] during a replay) ends without sending the rest of its queue,
//!   with a last comment saying why; the browser's reconnect resumes after
//!   its `Last-Event-ID`, losing nothing.
//! - **Bounded memory.** A stream holds at most [`QUEUE`] events and
//!   [`QUEUE_BYTES`] of messages, all streams together [`POOL_BYTES`], and
//!   what the server sent ahead of it at most [`STREAM_WINDOW`]: a stalled
//!   stream costs about 2 MiB with hyper's write buffer until its cut, then
//!   only that write buffer (at most ~400 KiB) and its place under the cap
//!   until the browser closes ([`crate::backend::tail`]). The heap freed by
//!   cut and ended streams is given back to the system ([`crate::trim`]).

mod position;

use position::position;
pub use position::{BadPosition, MAX_EPOCH_BYTES, parse_position};

use crate::backend::resume::ResumeCounters;
use crate::backend::tail::{QueuePool, Tail, TailEvent, TailOptions};
use crate::backend::{Backend, Windows};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::EventMetrics;
use crate::trim::Trim;
use axum::extract::{Query, RawQuery, State, rejection::QueryRejection};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A comment line this often keeps an idle stream open through proxies.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reconnect delay the browser is told (`retry:`).
pub const RETRY: Duration = Duration::from_secs(1);
/// Events queued for one browser before it counts as too slow: the server's
/// own per-subscriber queue (`MESSENGER_SUBSCRIBER_QUEUE`'s default).
pub const QUEUE: usize = 1024;
/// Bytes of messages queued for one browser before it counts as too slow
/// (live) or must wait for room (replay): 16 of the largest messages (64 KiB
/// texts), thousands of ordinary ones.
pub const QUEUE_BYTES: usize = 1024 * 1024;
/// Bytes of messages queued for all of a client's streams together: a
/// quarter of what 256 full queues would hold.
pub const POOL_BYTES: usize = 64 * 1024 * 1024;
/// How long a replay waits for room in a full queue before its stream is
/// cut: a reader that took nothing for this long has stalled, and must not
/// keep its queue and its subscription.
pub const STALL: Duration = Duration::from_secs(10);
/// The HTTP/2 window of each stream's subscription: what the server may
/// send ahead of the reader (hyper's default is 2 MiB). The connection's
/// is this times the stream cap ([`windows`]).
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The header name browsers send on reconnect.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The flow-control windows of the connection the streams share: each
/// stream's [`STREAM_WINDOW`], and room for `max` of them at once, so
/// streams that stopped reading never hold the others' share.
pub fn windows(max: usize) -> Windows {
    let connection = (max.max(1) as u64 * u64::from(STREAM_WINDOW)).min(MAX_WINDOW);
    Windows {
        stream: STREAM_WINDOW,
        connection: connection as u32,
    }
}

/// The largest HTTP/2 window (RFC 9113 §6.9.1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// The open `/events` streams: their cap, their stop, their metrics.
#[derive(Clone)]
pub struct EventStreams {
    backend: Backend,
    permits: Arc<Semaphore>,
    max: usize,
    pool: QueuePool,
    trim: Trim,
    stop: CancellationToken,
    metrics: EventMetrics,
}

impl EventStreams {
    pub fn new(backend: Backend, max: usize) -> Self {
        Self {
            backend,
            permits: Arc::new(Semaphore::new(max)),
            max,
            pool: QueuePool::new(POOL_BYTES),
            trim: Trim::default(),
            stop: CancellationToken::new(),
            metrics: EventMetrics::new(),
        }
    }

    /// Ends every open stream now and refuses new ones (shutdown).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Since {
    /// Resume after this `<epoch>:<offset>` (an event id); `Last-Event-ID` wins.
    since: Option<String>,
}

#[utoipa::path(get, path = "/events", operation_id = "events", tag = "messages",
    description = "The chat as Server-Sent Events, each its own subscriber on the server. \
        `id: <epoch>:<offset>`; data is a message as /getAndFlushMessages shows it, plus `traceparent` when it has one. \
        `event: ready` comes first; `event: gap` says messages were lost (`missed`: a count or null). \
        Resumes after `Last-Event-ID` (or `since`) with no gap and no duplicate while the server's history covers it. \
        Never ends on its own: a keep-alive comment every 15 s.",
    params(Since, ("Last-Event-ID" = Option<String>, Header, description = "`<epoch>:<offset>` of the last event received")),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "The position is not `<epoch>:<offset>`, or its epoch is longer than 64 bytes", body = ErrorBody),
        (status = 401, description = "The server wants a token and this client has none or a malformed one", body = ErrorBody),
        (status = 403, description = "The server refused this client's token", body = ErrorBody),
        (status = 404, description = "`/events` is turned off (MESSENGER_MAX_EVENT_STREAMS=0); no retry can succeed", body = ErrorBody),
        (status = 405, description = "A method other than GET or HEAD", body = ErrorBody),
        (status = 502, description = "The server answered outside the messenger contract", body = ErrorBody),
        (status = 503, description = "Too many streams (MESSENGER_MAX_EVENT_STREAMS), shutting down, or the server is unreachable; retry", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The server did not answer", body = ErrorBody),
    ))]
pub(crate) async fn events(
    State(streams): State<EventStreams>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Response, ApiError> {
    if streams.max == 0 {
        return Err(ApiError::EventsOff);
    }
    let since = position(&headers, raw.as_deref(), query)?;
    if streams.stop.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let permit = Arc::clone(&streams.permits)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams { limit: streams.max })?;
    let m = &streams.metrics;
    let tail = streams
        .backend
        .tail(TailOptions {
            since,
            queue: QUEUE,
            queue_bytes: QUEUE_BYTES,
            pool: streams.pool.clone(),
            stall: STALL,
            trim: streams.trim.clone(),
            counters: ResumeCounters {
                recovered_resumes: m.resumes_recovered.clone(),
                gaps: m.resumes_gap.clone(),
                recovered_messages: metrics::Counter::noop(),
            },
            cut: m.cut.clone(),
        })
        .await
        .map_err(ApiError::from)?;
    let open = Open::new(tail, permit, &streams);
    let stream = futures_util::stream::unfold(open, Open::next);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    let no_buffering = (
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(([no_buffering], sse).into_response())
}

/// One open stream: its queue, its slot under the cap, its gauge.
struct Open {
    tail: Tail,
    /// The tail's cut signal (apart, so waiting on it and on the tail can overlap).
    cut: CancellationToken,
    stop: CancellationToken,
    metrics: EventMetrics,
    first: bool,
    /// The last event (a cut's comment) was sent.
    ended: bool,
    /// Asked for once the stream's memory is freed.
    trim: Trim,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(tail: Tail, permit: OwnedSemaphorePermit, streams: &EventStreams) -> Self {
        streams.metrics.open.increment(1.0);
        Self {
            cut: tail.cut.clone(),
            tail,
            stop: streams.stop.clone(),
            metrics: streams.metrics.clone(),
            trim: streams.trim.clone(),
            first: true,
            ended: false,
            _permit: permit,
        }
    }

    /// The next event, or the end: shutdown, a cut (after a comment saying
    /// why), or the subscription's end.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.ended {
            return None;
        }
        let event = tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            () = self.cut.cancelled() => {
                self.ended = true;
                let why = self.tail.cause().map_or("cut", |c| c.reason());
                let comment = format!("cut: {why}; reconnect to resume after Last-Event-ID");
                return Some((Ok(Event::default().comment(comment)), self));
            }
            e = self.tail.recv() => e,
        }?;
        self.metrics.sent.increment(1);
        let mut sse = to_sse(event, &self.metrics);
        if std::mem::take(&mut self.first) {
            sse = sse.retry(RETRY);
        }
        Some((Ok(sse), self))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.open.decrement(1.0);
        self.trim.request();
    }
}

fn to_sse(event: TailEvent, metrics: &EventMetrics) -> Event {
    let (sse, epoch, offset) = match event {
        TailEvent::Open {
            epoch,
            offset,
            recovered,
        } => {
            let data = json!({"epoch": epoch, "offset": offset, "recovered": recovered});
            (
                Event::default().event("ready").data(data.to_string()),
                epoch,
                offset,
            )
        }
        TailEvent::Gap { epoch, offset, gap } => {
            metrics.gaps.increment(1);
            let data = json!({"missed": gap.missed, "epoch": epoch, "offset": offset});
            (
                Event::default().event("gap").data(data.to_string()),
                epoch,
                offset,
            )
        }
        TailEvent::Message {
            epoch,
            offset,
            message,
            traceparent,
        } => {
            let mut data = json!({
                "author": message.author,
                "text": message.text,
                "sendTime": message.send_time,
            });
            if let Some(t) = traceparent {
                data["traceparent"] = t.into();
            }
            (Event::default().data(data.to_string()), epoch, offset)
        }
    };
    // An epoch is visible ASCII (a header value); anything else gets no id
    // rather than a broken stream.
    if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_graphic()) {
        sse.id(format!("{epoch}:{offset}"))
    } else {
        sse
    }
}
