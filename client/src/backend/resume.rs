//! Where this client's stream resumes after a break (proto/CONTRACT.md, "Opt-in
//! extensions"): the epoch and the offset of the last message it buffered.
//!
//! Invariants:
//! - **Every re-subscription resumes** with `messenger-since: <epoch>:<offset>`
//!   once a position is known; the first subscription is plain (only messages
//!   after it, as the contract says) and asks for offsets, so the position is
//!   known from its headers (`messenger-epoch`, `messenger-head-offset`) even
//!   before any message arrives.
//! - **No duplicates.** A message at or below the position is never buffered
//!   again; the position only moves forward within an epoch.
//! - **Live only after the replay.** After a recovered resume the stream is
//!   "live" (what `/readyz` and `/sendMessage` wait for) once the message at
//!   the head offset of the response headers has been buffered.
//! - **A gap is said once, and only when one is possible.**
//!   `messenger-recovered: false` logs one warning with the number of
//!   messages missed when the epoch is unchanged (head offset minus
//!   position), "unknown" when it changed, and is counted. A new epoch is no
//!   gap when the previous stream ended drained at this client's position
//!   (trailer `messenger-last-offset`, [`Resumer::on_end`]): that server
//!   accepted nothing more in the old epoch (a graceful restart).
//! - **Nothing of a new epoch is skipped.** When the epoch changed, every
//!   message of the new one came after the loss and none is buffered yet, so
//!   the stream is dropped and re-opened at once from `<new epoch>:0`
//!   ([`Headers::Again`]): the messages accepted between the loss and this
//!   re-subscription (the first send after a broker came back empty, say)
//!   are replayed, not skipped as the contract's "starts live" would.
//!
//! A server that sends no epoch or head offset gets plain re-subscriptions.

use crate::metrics::Metrics;
use messenger_proto::{
    EPOCH_METADATA, HEAD_OFFSET_METADATA, LAST_OFFSET_METADATA, OFFSETS_METADATA,
    RECOVERED_METADATA, SINCE_METADATA,
};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    epoch: String,
    /// Offset of the last message buffered, or the head at subscription.
    offset: u64,
}

/// What a streamed message is to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Buffer it. `replayed`: it came from history; `now_live`: it ended the replay.
    Keep { replayed: bool, now_live: bool },
    /// Already buffered (at or below the position): drop it.
    Duplicate,
}

/// What the response headers of a subscription mean for its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// Live at once (nothing to replay).
    Live,
    /// Live once the replay up to the head is buffered.
    Replay,
    /// The epoch changed: drop this stream and re-subscribe now, from the
    /// new epoch's start.
    Again,
}

/// The resume state of one subscriber loop.
pub struct Resumer {
    position: Option<Position>,
    /// While a replay is being read: the offset it ends at.
    replay_end: Option<u64>,
    /// The last request carried `messenger-since`.
    asked: bool,
    /// The last stream ended drained at this position: nothing of its epoch
    /// was missed.
    drained: Option<Position>,
    metrics: Metrics,
}

impl Resumer {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            position: None,
            replay_end: None,
            asked: false,
            drained: None,
            metrics,
        }
    }

    /// Reads how a stream ended; true when the server drained it to this
    /// client's position (`messenger-last-offset` equal to it): a shutdown
    /// after which nothing of the epoch can have been missed.
    pub fn on_end(&mut self, status: &tonic::Status) -> bool {
        let last = status
            .metadata()
            .get(LAST_OFFSET_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        self.drained = self
            .position
            .clone()
            .filter(|p| last == Some(p.offset) && self.replay_end.is_none());
        self.drained.is_some()
    }

    /// Adds `messenger-offsets: 1` and, once a position is known, `messenger-since`.
    pub fn request_metadata(&mut self, metadata: &mut MetadataMap) {
        metadata.insert(OFFSETS_METADATA, AsciiMetadataValue::from_static("1"));
        self.asked = false;
        self.replay_end = None;
        let Some(p) = &self.position else { return };
        match AsciiMetadataValue::try_from(format!("{}:{}", p.epoch, p.offset)) {
            Ok(value) => {
                metadata.insert(SINCE_METADATA, value);
                self.asked = true;
            }
            Err(_) => {
                tracing::warn!(epoch = %p.epoch, "server epoch is not ASCII; re-subscribing without resume")
            }
        }
    }

    /// Reads the response headers of a subscription.
    pub fn on_headers(&mut self, headers: &MetadataMap) -> Headers {
        let text = |key| headers.get(key).and_then(|v| v.to_str().ok());
        let epoch = text(EPOCH_METADATA);
        let head = text(HEAD_OFFSET_METADATA).and_then(|v| v.parse::<u64>().ok());
        let (Some(epoch), Some(head)) = (epoch, head) else {
            self.position = None;
            return Headers::Live;
        };
        let drained = self.drained.take();
        let previous = self.position.replace(Position {
            epoch: epoch.to_owned(),
            offset: head,
        });
        let (true, Some(previous)) = (self.asked, previous) else {
            return Headers::Live;
        };
        if text(RECOVERED_METADATA) == Some("true") {
            self.metrics.resumes_recovered.increment(1);
            let replay = head.saturating_sub(previous.offset);
            tracing::info!(
                replay,
                from_offset = previous.offset,
                epoch,
                "stream resumed from history"
            );
            self.position = Some(previous);
            if replay == 0 {
                return Headers::Live;
            }
            self.replay_end = Some(head);
            return Headers::Replay;
        }
        if previous.epoch != epoch && drained.as_ref() == Some(&previous) {
            tracing::info!(
                previous_epoch = %previous.epoch,
                last_offset = previous.offset,
                epoch,
                "server restarted after draining this stream: nothing was missed; \
                 re-subscribing from the new epoch's start"
            );
            self.position = Some(Position {
                epoch: epoch.to_owned(),
                offset: 0,
            });
            return Headers::Again;
        }
        self.metrics.resumes_gap.increment(1);
        if previous.epoch == epoch && head >= previous.offset {
            tracing::warn!(
                missed = head - previous.offset,
                from_offset = previous.offset,
                epoch,
                "stream resumed with a gap: messages after the last buffered one are no longer in the server's history"
            );
            return Headers::Live;
        }
        tracing::warn!(
            missed = "unknown",
            previous_epoch = %previous.epoch,
            epoch,
            head,
            "stream resumed with a gap: the server's history was lost (new epoch); re-subscribing from the new epoch's start"
        );
        self.position = Some(Position {
            epoch: epoch.to_owned(),
            offset: 0,
        });
        Headers::Again
    }

    /// Decides about a message with `offset` (0: the server sent none).
    pub fn on_message(&mut self, offset: u64) -> Received {
        let Some(position) = self.position.as_mut().filter(|_| offset != 0) else {
            return Received::Keep {
                replayed: false,
                now_live: false,
            };
        };
        if offset <= position.offset {
            tracing::debug!(
                offset,
                position = position.offset,
                "duplicate message dropped"
            );
            return Received::Duplicate;
        }
        position.offset = offset;
        let Some(end) = self.replay_end else {
            return Received::Keep {
                replayed: false,
                now_live: false,
            };
        };
        self.metrics.recovered.increment(1);
        let now_live = offset >= end;
        if now_live {
            self.replay_end = None;
        }
        Received::Keep {
            replayed: true,
            now_live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, AsciiMetadataValue::from_static(v));
        }
        m
    }

    fn since(r: &mut Resumer) -> Option<String> {
        let mut m = MetadataMap::new();
        r.request_metadata(&mut m);
        assert_eq!(m.get(OFFSETS_METADATA).unwrap(), "1");
        m.get(SINCE_METADATA)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    const KEEP: Received = Received::Keep {
        replayed: false,
        now_live: false,
    };

    #[test]
    fn first_plain_then_resumes_from_the_head_or_the_last_buffered() {
        let mut r = Resumer::new(Metrics::new());
        assert_eq!(since(&mut r), None);
        let first = [("messenger-epoch", "e"), ("messenger-head-offset", "7")];
        assert_eq!(r.on_headers(&headers(&first)), Headers::Live);
        assert_eq!(
            since(&mut r).as_deref(),
            Some("e:7"),
            "nothing received: from the head"
        );
        let recovered = [
            ("messenger-epoch", "e"),
            ("messenger-head-offset", "10"),
            ("messenger-recovered", "true"),
        ];
        assert_eq!(r.on_headers(&headers(&recovered)), Headers::Replay);
        let replayed = |now_live| Received::Keep {
            replayed: true,
            now_live,
        };
        assert_eq!(r.on_message(8), replayed(false));
        assert_eq!(r.on_message(8), Received::Duplicate);
        assert_eq!(r.on_message(9), replayed(false));
        assert_eq!(r.on_message(10), replayed(true));
        assert_eq!(r.on_message(11), KEEP);
        assert_eq!(since(&mut r).as_deref(), Some("e:11"));
    }

    #[test]
    fn a_gap_in_the_same_epoch_moves_the_position_to_the_new_head() {
        let mut r = Resumer::new(Metrics::new());
        r.on_headers(&headers(&[
            ("messenger-epoch", "e"),
            ("messenger-head-offset", "0"),
        ]));
        assert_eq!(r.on_message(1), KEEP);
        since(&mut r);
        let gap = [
            ("messenger-epoch", "e"),
            ("messenger-head-offset", "3"),
            ("messenger-recovered", "false"),
        ];
        assert_eq!(r.on_headers(&headers(&gap)), Headers::Live);
        assert_eq!(r.on_message(2), Received::Duplicate, "below the new head");
        assert_eq!(r.on_message(4), KEEP);
        assert_eq!(since(&mut r).as_deref(), Some("e:4"));
    }

    /// A new epoch's messages all came after the loss: none is skipped. The
    /// stream is re-opened from `<new epoch>:0`, and that replay is resumed
    /// like any other.
    #[test]
    fn a_new_epoch_is_resumed_from_its_start() {
        let mut r = Resumer::new(Metrics::new());
        r.on_headers(&headers(&[
            ("messenger-epoch", "e"),
            ("messenger-head-offset", "0"),
        ]));
        assert_eq!(r.on_message(1), KEEP);
        assert_eq!(since(&mut r).as_deref(), Some("e:1"));
        let lost = [
            ("messenger-epoch", "f"),
            ("messenger-head-offset", "2"),
            ("messenger-recovered", "false"),
        ];
        assert_eq!(r.on_headers(&headers(&lost)), Headers::Again);
        assert_eq!(since(&mut r).as_deref(), Some("f:0"));
        let replay = [
            ("messenger-epoch", "f"),
            ("messenger-head-offset", "2"),
            ("messenger-recovered", "true"),
        ];
        assert_eq!(r.on_headers(&headers(&replay)), Headers::Replay);
        let replayed = |now_live| Received::Keep {
            replayed: true,
            now_live,
        };
        assert_eq!(r.on_message(1), replayed(false));
        assert_eq!(r.on_message(2), replayed(true));
        assert_eq!(since(&mut r).as_deref(), Some("f:2"));
    }

    fn ended(pairs: &[(&'static str, &'static str)]) -> tonic::Status {
        let mut status = tonic::Status::unavailable("server shutting down");
        *status.metadata_mut() = headers(pairs);
        status
    }

    /// Issue 26, item 7: a stream drained to this client's position by a
    /// graceful shutdown is no gap when the next server has a new epoch; a
    /// stream that just broke, or was drained past it, still is.
    #[test]
    fn a_new_epoch_after_a_drain_to_the_position_is_no_gap() {
        let new_epoch = [
            ("messenger-epoch", "f"),
            ("messenger-head-offset", "0"),
            ("messenger-recovered", "false"),
        ];
        for (trailer, gap) in [(Some("2"), false), (Some("3"), true), (None, true)] {
            let mut r = Resumer::new(Metrics::new());
            r.on_headers(&headers(&[
                ("messenger-epoch", "e"),
                ("messenger-head-offset", "0"),
            ]));
            assert_eq!((r.on_message(1), r.on_message(2)), (KEEP, KEEP));
            let end = match trailer {
                Some(last) => ended(&[("messenger-last-offset", last)]),
                None => ended(&[]),
            };
            assert_eq!(r.on_end(&end), !gap, "{trailer:?}");
            assert_eq!(since(&mut r).as_deref(), Some("e:2"));
            assert_eq!(r.on_headers(&headers(&new_epoch)), Headers::Again);
            assert_eq!(since(&mut r).as_deref(), Some("f:0"), "{trailer:?}");
            assert!(r.drained.is_none(), "a drain is used once");
        }
    }

    #[test]
    fn a_server_without_offsets_gets_plain_resubscriptions() {
        let mut r = Resumer::new(Metrics::new());
        assert_eq!(r.on_headers(&MetadataMap::new()), Headers::Live);
        assert_eq!(r.on_message(0), KEEP);
        assert_eq!(since(&mut r), None);
    }
}
