//! The hub with the bookkeeping after every publish into it: the one place
//! that records what came of a publish.
//!
//! Both ways a message enters the hub, [`Fanout::publish_here`] (sequenced
//! in this process) and [`Fanout::ingest`] (sequenced by the broker, read
//! back by this replica: the broker's one way into the hub), go through
//! [`Fanout::record`]: the `fanout` span and its subscriber count, the
//! fan-out duration, the history gauges and the slow-subscriber disconnects
//! are recorded there and nowhere else, so subscribers, metrics and spans are
//! the same whichever publisher runs ([`crate::core::publish`]).
//!
//! It imports the hub, history and operations' metric and trace types; not
//! the broker, which sits above it.

use crate::core::history::{Draft, Message};
pub(crate) use crate::core::hub::ShuttingDown;
use crate::core::hub::{self, Hub, MessageTrace, Published};
use crate::ops::metrics::{DisconnectReason, Metrics};
use crate::ops::trace::{FanoutTrace, ReceiveTrace};
use messenger_runtime::telemetry::event_on_current;
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::Instant;

/// The hub and the bookkeeping after each publish into it.
pub(crate) struct Fanout {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// `MESSENGER_TRACE_DELIVER_SPANS_MAX`, for each message's `fanout`.
    deliver_spans_max: usize,
}

/// One message sequenced by the broker, as this replica read it.
pub(crate) struct Ingested {
    pub(crate) author: String,
    pub(crate) text: String,
    /// The sender's context, as the entry carries it.
    pub(crate) traceparent: Option<String>,
    pub(crate) send_time: i128,
    pub(crate) offset: u64,
}

impl Fanout {
    pub(crate) fn new(hub: Arc<Hub>, metrics: Arc<Metrics>, deliver_spans_max: usize) -> Self {
        Self {
            hub,
            metrics,
            deliver_spans_max,
        }
    }

    /// Sequences `author`/`text` in this process and hands it to every
    /// subscriber, under the current `SendMessage` span.
    pub(crate) fn publish_here(
        &self,
        author: String,
        text: String,
    ) -> Result<i128, hub::PublishError> {
        let trace = FanoutTrace::start(self.deliver_spans_max);
        let published = self.record(trace, |hub, trace| hub.publish(author, text, trace))?;
        let subscribers = published.delivered_to;
        tracing::debug!(subscribers, "message accepted");
        // The same event on the `SendMessage` span, when it records.
        let site = messenger_runtime::code_site!();
        event_on_current("message accepted", tracing::Level::DEBUG, site, || {
            vec![KeyValue::new("subscribers", subscribers as i64)]
        });
        Ok(published.message.send_time)
    }

    /// Holds `message`, sequenced by the broker, in history and hands it to
    /// every subscriber. A live entry (`receive`: its `broker.receive` span)
    /// continues its sender's trace with this replica's `fanout`; the
    /// message keeps `fanout`'s context for replays when it was recorded,
    /// else the sender's. The caller hands messages over in the broker's
    /// order and calls [`Fanout::restart`] first when one does not follow.
    pub(crate) fn ingest(
        &self,
        message: Ingested,
        receive: Option<&ReceiveTrace>,
    ) -> Result<(), ShuttingDown> {
        let trace = receive.map(|r| r.fanout(self.deliver_spans_max));
        let traceparent = (trace.as_ref().and_then(|t| t.traceparent())).or(message.traceparent);
        let draft = Draft {
            author: message.author,
            text: message.text,
            traceparent,
        };
        let (send_time, offset) = (message.send_time, message.offset);
        self.record(trace, |hub, trace| {
            hub.ingest(Message::new(draft, send_time, offset), trace)
        })?;
        Ok(())
    }

    /// History could not continue: see [`Hub::restart`].
    pub(crate) fn restart(&self, epoch: String, newest: u64) -> usize {
        self.hub.restart(epoch, newest)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.hub.is_shut_down()
    }

    /// Runs one publish into the hub with `trace` riding along, then records
    /// what came of it: the one place after a publish.
    fn record<E>(
        &self,
        trace: Option<Arc<FanoutTrace>>,
        publish: impl FnOnce(&Hub, Option<Arc<dyn MessageTrace>>) -> Result<Published, E>,
    ) -> Result<Published, E> {
        let started = Instant::now();
        let riding = trace.clone().map(|t| t as Arc<dyn MessageTrace>);
        let published = publish(&self.hub, riding)?;
        if let Some(trace) = &trace {
            trace.set_subscribers(published.delivered_to);
        }
        let metrics = &self.metrics;
        metrics
            .fanout_duration
            .record(started.elapsed().as_secs_f64());
        metrics.history(published.history);
        metrics.disconnected(DisconnectReason::Slow, published.dropped_slow as u64);
        Ok(published)
    }
}
