//! The message buffer between the stream and `/getAndFlushMessages`.
//!
//! Invariants: messages are kept in stream order; [`Buffer::take`] empties it
//! atomically (a message is returned by exactly one flush); it never holds
//! more than `limit` messages: on overflow the oldest are dropped, counted, and
//! a warning is logged once per overflow episode (until the next flush).
//! The `messenger_client_buffered_messages` gauge is set under the same lock
//! as every change, so it always equals what a flush would return.
//! [`Buffer::wait_pushed`] learns of a message only after it is in the buffer.

use crate::metrics::{BUFFERED, DROPPED};
use metrics::{Counter, Gauge};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// A message as `/getAndFlushMessages` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BufferedMessage {
    pub author: String,
    pub text: String,
    /// RFC 3339 UTC, exactly 9 fractional digits and `Z`, e.g. `2021-09-12T10:25:22.454093428Z`.
    #[serde(rename = "sendTime")]
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")]
    pub send_time: String,
}

pub struct Buffer {
    limit: usize,
    inner: Mutex<Inner>,
    buffered: Gauge,
    dropped: Counter,
    /// `sendTime` of the newest message pushed ("" before the first).
    newest: watch::Sender<String>,
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<BufferedMessage>,
    dropped_total: u64,
    overflowing: bool,
}

impl Buffer {
    pub fn new(limit: usize) -> Self {
        assert!(limit > 0, "buffer limit must be positive");
        Self {
            limit,
            inner: Mutex::new(Inner::default()),
            buffered: metrics::gauge!(BUFFERED),
            dropped: metrics::counter!(DROPPED),
            newest: watch::Sender::new(String::new()),
        }
    }

    /// Appends a message, dropping the oldest if the buffer is full.
    pub fn push(&self, message: BufferedMessage) {
        let mut inner = self.inner.lock();
        let mut started_overflow = false;
        if inner.messages.len() >= self.limit {
            inner.messages.pop_front();
            inner.dropped_total += 1;
            self.dropped.increment(1);
            started_overflow = !std::mem::replace(&mut inner.overflowing, true);
        }
        let send_time = message.send_time.clone();
        inner.messages.push_back(message);
        self.buffered.set(inner.messages.len() as f64);
        drop(inner);
        self.newest.send_replace(send_time);
        if started_overflow {
            tracing::warn!(
                limit = self.limit,
                "buffer full; dropping the oldest messages until the next flush"
            );
        }
    }

    /// Waits until a message stamped `send_time` or later has been pushed, at
    /// most `limit`; `false` on timeout. sendTimes are strictly increasing
    /// in the stream's one order and share one fixed-width RFC 3339 format,
    /// so they compare as strings.
    pub async fn wait_pushed(&self, send_time: &str, limit: Duration) -> bool {
        let mut newest = self.newest.subscribe();
        let pushed = newest.wait_for(|newest| newest.as_str() >= send_time);
        matches!(tokio::time::timeout(limit, pushed).await, Ok(Ok(_)))
    }

    /// Removes and returns everything buffered, oldest first.
    pub fn take(&self) -> Vec<BufferedMessage> {
        let mut inner = self.inner.lock();
        inner.overflowing = false;
        self.buffered.set(0.0);
        std::mem::take(&mut inner.messages).into()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages dropped on overflow since start.
    pub fn dropped_total(&self) -> u64 {
        self.inner.lock().dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize) -> BufferedMessage {
        BufferedMessage {
            author: "a".into(),
            text: i.to_string(),
            send_time: String::new(),
        }
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let b = Buffer::new(3);
        (0..5).for_each(|i| b.push(msg(i)));
        assert_eq!(b.dropped_total(), 2);
        let texts: Vec<_> = b.take().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["2", "3", "4"]);
        assert!(b.is_empty());
    }

    #[test]
    fn serializes_with_contract_names() {
        let m = BufferedMessage {
            author: "a".into(),
            text: "t".into(),
            send_time: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"author":"a","text":"t","sendTime":"x"}"#
        );
    }
}
