//! The operator's view of subscribers, without per-subscriber metric labels:
//! `GET /debug/subscribers` on the metrics port (a JSON array, one object per
//! open stream) and SIGUSR2, which logs the same at info, one structured line
//! per subscriber after a summary line (in-flight `SendMessage` calls,
//! history size, epoch). Neither changes anything; the process keeps serving.

use crate::core::hub::{Hub, SubscriberDump};
use axum::Json;
use axum::routing::get;
use messenger_proto::time::{format_rfc3339, to_timestamp};
use serde::Serialize;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Path of the dump on the metrics port.
pub(crate) const SUBSCRIBERS_PATH: &str = "/debug/subscribers";

/// One open stream as the endpoint shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SubscriberView {
    pub id: u64,
    /// `ip:port` of the peer, when known.
    pub peer: Option<String>,
    /// RFC 3339 UTC.
    pub connected_since: String,
    /// Live messages queued, not yet written to the stream.
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Replayed messages not yet written.
    pub replay_pending: usize,
    pub delivered: u64,
    /// 0 before the first message.
    pub last_offset: u64,
    pub resumed: bool,
    pub wants_trace_context: bool,
}

impl From<SubscriberDump> for SubscriberView {
    fn from(d: SubscriberDump) -> Self {
        Self {
            id: d.id,
            peer: d.peer.map(|p| p.to_string()),
            connected_since: format_rfc3339(&to_timestamp(d.connected_since)).unwrap_or_default(),
            queue_depth: d.queue_depth,
            queue_capacity: d.queue_capacity,
            replay_pending: d.replay_pending,
            delivered: d.delivered,
            last_offset: d.last_offset,
            resumed: d.resumed,
            wants_trace_context: d.wants_trace,
        }
    }
}

/// Every open stream, by id.
pub(crate) fn subscribers(hub: &Hub) -> Vec<SubscriberView> {
    hub.dump().into_iter().map(SubscriberView::from).collect()
}

/// `GET /debug/subscribers`, to be merged into the metrics router.
pub(crate) fn router(hub: Arc<Hub>) -> axum::Router {
    axum::Router::new().route(
        SUBSCRIBERS_PATH,
        get(move || {
            let hub = Arc::clone(&hub);
            async move { Json(subscribers(&hub)) }
        }),
    )
}

/// Logs the dump on every SIGUSR2 until aborted.
pub(crate) fn log_on_sigusr2(
    hub: Arc<Hub>,
    in_flight: TaskTracker,
) -> std::io::Result<JoinHandle<()>> {
    let mut signals = signal(SignalKind::user_defined2())?;
    Ok(tokio::spawn(async move {
        while signals.recv().await.is_some() {
            log_dump(&hub, &in_flight);
        }
    }))
}

fn log_dump(hub: &Hub, in_flight: &TaskTracker) {
    let history = hub.history();
    let subs = subscribers(hub);
    tracing::info!(
        in_flight_sends = in_flight.len(),
        history_messages = history.messages,
        history_bytes = history.bytes,
        newest_offset = history.newest,
        epoch = %hub.epoch(),
        subscribers = subs.len(),
        "SIGUSR2 debug dump"
    );
    for s in subs {
        tracing::info!(
            subscriber = s.id,
            peer = s.peer.as_deref().unwrap_or("-"),
            connected_since = %s.connected_since,
            queue_depth = s.queue_depth,
            queue_capacity = s.queue_capacity,
            replay_pending = s.replay_pending,
            delivered = s.delivered,
            last_offset = s.last_offset,
            resumed = s.resumed,
            wants_trace_context = s.wants_trace_context,
            "SIGUSR2 debug dump: subscriber"
        );
    }
}
