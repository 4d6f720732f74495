//! The message buffer between the stream and `/getAndFlushMessages`.
//!
//! Invariants: messages are kept in stream order; [`Buffer::take`] empties it
//! atomically (a message is returned by exactly one flush); it never holds
//! more than `limit` messages, nor more than `max_bytes` of them
//! ([`BufferedMessage::bytes`]) unless one message alone is larger (the
//! newest is always kept): on overflow the oldest are dropped, counted, and
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

impl BufferedMessage {
    /// What the message costs the buffer: its fields and a fixed overhead.
    pub fn bytes(&self) -> usize {
        self.author.len() + self.text.len() + self.send_time.len() + 64
    }
}

pub struct Buffer {
    limit: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    buffered: Gauge,
    dropped: Counter,
    /// `sendTime` of the newest message pushed ("" before the first).
    newest: watch::Sender<String>,
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<BufferedMessage>,
    /// [`BufferedMessage::bytes`] of `messages`.
    bytes: usize,
    dropped_total: u64,
    overflowing: bool,
}

impl Buffer {
    /// A buffer of at most `limit` messages and `max_bytes` of them.
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        assert!(limit > 0, "buffer limit must be positive");
        Self {
            limit,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            buffered: metrics::gauge!(BUFFERED),
            dropped: metrics::counter!(DROPPED),
            newest: watch::Sender::new(String::new()),
        }
    }

    /// Appends a message, dropping the oldest while the buffer is full (in
    /// messages or in bytes).
    pub fn push(&self, message: BufferedMessage) {
        let size = message.bytes();
        let mut inner = self.inner.lock();
        let mut dropped = 0;
        while !inner.messages.is_empty()
            && (inner.messages.len() >= self.limit || inner.bytes + size > self.max_bytes)
        {
            if let Some(oldest) = inner.messages.pop_front() {
                inner.bytes -= oldest.bytes();
            }
            dropped += 1;
        }
        let mut started_overflow = false;
        if dropped > 0 {
            inner.dropped_total += dropped;
            self.dropped.increment(dropped);
            started_overflow = !std::mem::replace(&mut inner.overflowing, true);
        }
        let send_time = message.send_time.clone();
        inner.bytes += size;
        inner.messages.push_back(message);
        self.buffered.set(inner.messages.len() as f64);
        drop(inner);
        self.newest.send_replace(send_time);
        if started_overflow {
            tracing::warn!(
                limit = self.limit,
                max_bytes = self.max_bytes,
                "buffer full (MESSENGER_CLIENT_BUFFER_LIMIT messages or MESSENGER_CLIENT_BUFFER_BYTES); \
                 dropping the oldest messages until the next flush"
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
        inner.bytes = 0;
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
        let b = Buffer::new(3, usize::MAX);
        (0..5).for_each(|i| b.push(msg(i)));
        assert_eq!(b.dropped_total(), 2);
        let texts: Vec<_> = b.take().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["2", "3", "4"]);
        assert!(b.is_empty());
    }

    #[test]
    fn past_its_bytes_the_oldest_are_dropped_and_the_newest_always_kept() {
        let one = msg(0).bytes();
        let b = Buffer::new(100, 3 * one);
        (0..5).for_each(|i| b.push(msg(i)));
        assert_eq!(b.dropped_total(), 2);
        let texts: Vec<_> = b.take().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["2", "3", "4"]);
        // After a flush the whole budget is free again.
        (5..8).for_each(|i| b.push(msg(i)));
        assert_eq!(b.dropped_total(), 2);
        // One message larger than the budget replaces everything, alone.
        let big = BufferedMessage {
            text: "x".repeat(4 * one),
            ..msg(9)
        };
        b.push(big.clone());
        assert_eq!(b.take(), [big]);
        assert_eq!(b.dropped_total(), 5);
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
