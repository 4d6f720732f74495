//! The publish seam: the one way `SendMessage` sends.
//!
//! [`Publisher`] is what the service calls. The app chooses it once, at
//! bind, from the two implemented here:
//! - [`Fanout`] (the embedded default): sequenced in this process, by the
//!   hub's history;
//! - the broker ([`RedisEngine`]): sequenced in Redis under a
//!   `broker.publish` span, then handed to this replica's hub through
//!   [`Fanout::ingest`] before the send returns. A broker replica serves
//!   subscriptions only once it has loaded the stream.
//!
//! Nothing else in the server branches on which one runs. Both
//! implementations live here, above the broker and [`crate::core::fanout`],
//! so neither of those imports this module.
//!
//! Invariant: a publisher's [`Publisher::publish`] returns only once the
//! message is in the queue of every subscriber of this process registered
//! before it (proto/CONTRACT.md: `SendMessage` returns after the message is
//! in every current subscriber's queue).

use crate::core::broker::{BrokerError, RedisEngine};
use crate::core::fanout::Fanout;
use crate::core::history::state::StateError;
use crate::core::hub::{self, ShuttingDown};
use crate::ops::trace::PublishTrace;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A publish in flight (a boxed future, so [`Publisher`] is a trait object).
pub(crate) type Publishing<'a> =
    Pin<Box<dyn Future<Output = Result<i128, PublishError>> + Send + 'a>>;

/// Why a publish failed, or why a subscription cannot start yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// The stamp could not be made durable (`MESSENGER_STATE_DIR`).
    #[error(transparent)]
    State(StateError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A broker replica that has not loaded the stream yet (unreachable
    /// since it started) has no epoch to serve a subscription from.
    #[error("broker {broker}: the stream is not loaded yet")]
    NotLoaded { broker: Arc<str> },
}

impl From<hub::PublishError> for PublishError {
    fn from(e: hub::PublishError) -> Self {
        match e {
            hub::PublishError::ShuttingDown(e) => Self::ShuttingDown(e),
            hub::PublishError::State(e) => Self::State(e),
        }
    }
}

/// The one seam the service sends through (see the module docs).
pub(crate) trait Publisher: Send + Sync + 'static {
    /// Puts one message in the chat's order and returns its `sendTime`
    /// (Unix nanoseconds, UTC) once every local subscriber has it queued.
    /// Runs under the caller's `SendMessage` span.
    fn publish(&self, author: String, text: String) -> Publishing<'_>;

    /// Whether a `ReadMessages` may subscribe now.
    fn ready(&self) -> Result<(), PublishError>;
}

impl Publisher for Fanout {
    fn publish(&self, author: String, text: String) -> Publishing<'_> {
        // Sequenced before the future is returned, under the caller's span.
        let sent = self.publish_here(author, text).map_err(PublishError::from);
        Box::pin(std::future::ready(sent))
    }

    fn ready(&self) -> Result<(), PublishError> {
        Ok(())
    }
}

impl Publisher for RedisEngine {
    fn publish(&self, author: String, text: String) -> Publishing<'_> {
        // Called from the `SendMessage` future, so under its span.
        let trace = PublishTrace::start(self.stream());
        Box::pin(async move {
            let sent = self.send(&author, &text, trace.traceparent()).await;
            match &sent {
                Ok(stamp) => trace.finish(Ok((&stamp.id, stamp.offset))),
                Err(e) => trace.finish(Err(&e.to_string())),
            }
            Ok(sent?.send_time)
        })
    }

    fn ready(&self) -> Result<(), PublishError> {
        if self.is_loaded() {
            return Ok(());
        }
        Err(PublishError::NotLoaded {
            broker: self.name().into(),
        })
    }
}
