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
//!   cut for falling behind ends without sending the rest of its queue.

use crate::backend::Backend;
use crate::backend::resume::ResumeCounters;
use crate::backend::tail::{Tail, TailEvent, TailOptions};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::EventMetrics;
use axum::extract::{Query, State, rejection::QueryRejection};
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
/// Bytes of messages queued for one browser before it counts as too slow:
/// bounds what a stalled reader holds (1,024 messages of 64 KiB would be 64 MiB).
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// The header name browsers send on reconnect.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The open `/events` streams: their cap, their stop, their metrics.
#[derive(Clone)]
pub struct EventStreams {
    backend: Backend,
    permits: Arc<Semaphore>,
    max: usize,
    stop: CancellationToken,
    metrics: EventMetrics,
}

impl EventStreams {
    pub fn new(backend: Backend, max: usize) -> Self {
        Self {
            backend,
            permits: Arc::new(Semaphore::new(max)),
            max,
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
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Response, ApiError> {
    if streams.max == 0 {
        return Err(ApiError::EventsOff);
    }
    let since = position(&headers, query)?;
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
            counters: ResumeCounters {
                recovered_resumes: m.resumes_recovered.clone(),
                gaps: m.resumes_gap.clone(),
                recovered_messages: metrics::Counter::noop(),
            },
            cut: m.cut.clone(),
        })
        .await
        .map_err(ApiError::from)?;
    let open = Open::new(tail, permit, streams.stop.clone(), m.clone());
    let stream = futures_util::stream::unfold(open, Open::next);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    let no_buffering = (
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(([no_buffering], sse).into_response())
}

/// `Last-Event-ID`, else `?since=`, parsed as the server parses `messenger-since`.
fn position(
    headers: &HeaderMap,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Option<(String, u64)>, ApiError> {
    if let Some(value) = headers.get(LAST_EVENT_ID) {
        let text = value.to_str().unwrap_or("\u{fffd}");
        return parse_position(text)
            .map(Some)
            .map_err(|e| bad_position("Last-Event-ID", text, e));
    }
    let Query(Since { since }) =
        query.map_err(|r| ApiError::BadPosition(format!("invalid query: {}", r.body_text())))?;
    match since {
        None => Ok(None),
        Some(text) => parse_position(&text)
            .map(Some)
            .map_err(|e| bad_position("since", &text, e)),
    }
}

fn bad_position(what: &str, got: &str, why: BadPosition) -> ApiError {
    let got: String = got.chars().take(64).collect();
    ApiError::BadPosition(match why {
        BadPosition::Form => {
            format!("{what} {got:?} is not <epoch>:<offset> (an event id, e.g. 1a2b3c:42)")
        }
        BadPosition::EpochTooLong => format!(
            "{what} {got:?}: the epoch is longer than {MAX_EPOCH_BYTES} bytes \
             (<epoch>:<offset>: an event id's epoch is 16 or 17 characters)"
        ),
        BadPosition::OffsetTooLarge => format!(
            "{what} {got:?}: the offset is larger than <epoch>:<offset> allows (at most {})",
            u64::MAX
        ),
    })
}

/// Why a position does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPosition {
    /// Not `<epoch>:<offset>`.
    Form,
    /// The form is right, but the offset is past `u64::MAX`.
    OffsetTooLarge,
    /// The epoch is longer than [`MAX_EPOCH_BYTES`].
    EpochTooLong,
}

/// The longest epoch a position may carry. The server's epochs are 16 hex
/// digits (in-process) or 16–17 decimal digits (a broker's `TIME`), so this
/// leaves a wide margin; what matters is that it is far below the server's
/// header-size limit, since the epoch travels as `messenger-since` metadata
/// on the HTTP/2 connection every `/events` stream of this client shares,
/// and a header the server refuses tears that connection down for all.
pub const MAX_EPOCH_BYTES: usize = 64;

/// `<epoch>:<offset>`: a non-empty epoch of visible ASCII (the last `:`
/// separates) of at most [`MAX_EPOCH_BYTES`] and a decimal u64, as the
/// server's `messenger-since`.
pub fn parse_position(text: &str) -> Result<(String, u64), BadPosition> {
    let (epoch, offset) = text.rsplit_once(':').ok_or(BadPosition::Form)?;
    if epoch.len() > MAX_EPOCH_BYTES {
        return Err(BadPosition::EpochTooLong);
    }
    let visible = !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_graphic());
    let digits = !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit());
    if !(visible && digits) {
        return Err(BadPosition::Form);
    }
    let offset = offset.parse().map_err(|_| BadPosition::OffsetTooLarge)?;
    Ok((epoch.to_owned(), offset))
}

/// One open stream: its queue, its slot under the cap, its gauge.
struct Open {
    tail: Tail,
    /// The tail's cut signal (apart, so waiting on it and on the tail can overlap).
    cut: CancellationToken,
    stop: CancellationToken,
    metrics: EventMetrics,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(
        tail: Tail,
        permit: OwnedSemaphorePermit,
        stop: CancellationToken,
        metrics: EventMetrics,
    ) -> Self {
        metrics.open.increment(1.0);
        Self {
            cut: tail.cut.clone(),
            tail,
            stop,
            metrics,
            first: true,
            _permit: permit,
        }
    }

    /// The next event, or the end: shutdown, a cut, or the subscription's end.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        let event = tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            () = self.cut.cancelled() => None,
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
