//! The broker as the server's [`Publisher`]: a send is sequenced by Redis
//! ([`RedisEngine::send`]) under a `broker.publish` span, and reaches this
//! replica's subscribers through the hub's ingest path before it returns.
//! A replica serves subscriptions only once it has loaded the stream.

use super::RedisEngine;
use crate::core::publish::{PublishError, Publisher, Publishing};
use crate::ops::trace::PublishTrace;
use std::sync::Arc;

impl Publisher for RedisEngine {
    fn publish(&self, author: String, text: String) -> Publishing<'_> {
        // Called from the `SendMessage` future, so under its span.
        let trace = PublishTrace::start(&self.stream);
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
            broker: Arc::clone(&self.name),
        })
    }
}
