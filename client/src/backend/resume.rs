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
//!   `messenger-recovered: false` logs one warning (at debug level for a
//!   browser's `/events` stream, whose gap goes to the browser) with the
//!   number of messages missed when the epoch is unchanged (head offset minus
//!   position; 0 when the position is ahead of the head, which the server
//!   starts live and which is no new epoch), "unknown" when it changed, and
//!   is counted. A new epoch is no
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
use metrics::Counter;
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

/// A resume the server's history could not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Messages missed, when known: the same epoch, so the head offset minus
    /// the position (0 when the position was ahead of the head: the stream
    /// starts live at the head). `None`: the epoch changed (history lost),
    /// size unknown.
    pub missed: Option<u64>,
}

/// What a [`Resumer`] counts: resumes that recovered, resumes with a gap,
/// messages replayed from history.
#[derive(Clone)]
pub struct ResumeCounters {
    pub recovered_resumes: Counter,
    pub gaps: Counter,
    pub recovered_messages: Counter,
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
    /// The gap the last response headers reported, until taken.
    gap: Option<Gap>,
    counters: ResumeCounters,
    /// Gaps are logged as warnings: this client's own stream (its buffer has
    /// the gap). A browser's `/events` stream ([`Resumer::with_counters`])
    /// tells its gap to the browser and counts it; a log line per browser
    /// would let any caller with a stale `Last-Event-ID` fill the log, so
    /// those are at debug level.
    loud: bool,
    /// The last response headers reported a lost epoch, and the stream is
    /// being re-opened from the new epoch's start: that resume is not
    /// counted again as recovered.
    regap: bool,
}

/// At `$level` for this client's own stream, at debug for a browser's.
macro_rules! resume_event {
    ($loud:expr, $level:ident, $($arg:tt)+) => {
        if $loud {
            tracing::$level!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}

impl Resumer {
    /// This client's own stream: gaps are warnings.
    pub fn new(metrics: Metrics) -> Self {
        let mut resumer = Self::with_counters(ResumeCounters {
            recovered_resumes: metrics.resumes_recovered,
            gaps: metrics.resumes_gap,
            recovered_messages: metrics.recovered,
        });
        resumer.loud = true;
        resumer
    }

    /// A browser's stream counting into `counters`, with no position yet;
    /// gaps are logged at debug level (see `loud`).
    pub fn with_counters(counters: ResumeCounters) -> Self {
        Self {
            position: None,
            replay_end: None,
            asked: false,
            drained: None,
            gap: None,
            counters,
            loud: false,
            regap: false,
        }
    }

    /// A resumer whose first request resumes after `offset` of `epoch`.
    pub fn since(epoch: String, offset: u64, counters: ResumeCounters) -> Self {
        let mut resumer = Self::with_counters(counters);
        resumer.position = Some(Position { epoch, offset });
        resumer
    }

    /// The epoch and offset of the last message kept (or the head at
    /// subscription, or where a gap left it): where a resume starts.
    pub fn position(&self) -> Option<(&str, u64)> {
        self.position.as_ref().map(|p| (p.epoch.as_str(), p.offset))
    }

    /// The gap the last response headers reported, once.
    pub fn take_gap(&mut self) -> Option<Gap> {
        self.gap.take()
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
        self.gap = None;
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
        let regap = std::mem::take(&mut self.regap);
        if text(RECOVERED_METADATA) == Some("true") {
            // The re-subscription from a new epoch's start that follows a
            // gap is part of that resume, already counted as a gap.
            if !regap {
                self.counters.recovered_resumes.increment(1);
            }
            let replay = head.saturating_sub(previous.offset);
            resume_event!(
                self.loud,
                info,
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
            resume_event!(
                self.loud,
                info,
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
        self.counters.gaps.increment(1);
        if previous.epoch == epoch && head < previous.offset {
            // Ahead of the newest offset: the server starts it live at its
            // head (CONTRACT), in the same epoch, so no history was lost.
            self.gap = Some(Gap { missed: Some(0) });
            resume_event!(
                self.loud,
                warn,
                from_offset = previous.offset,
                head,
                epoch,
                "resume position is ahead of the server's newest offset in its epoch: \
                 starting live at the head (nothing replayed, no history lost)"
            );
            return Headers::Live;
        }
        if previous.epoch == epoch {
            self.gap = Some(Gap {
                missed: Some(head - previous.offset),
            });
            resume_event!(
                self.loud,
                warn,
                missed = head - previous.offset,
                from_offset = previous.offset,
                epoch,
                "stream resumed with a gap: messages after the last buffered one are no longer in the server's history"
            );
            return Headers::Live;
        }
        resume_event!(
            self.loud,
            warn,
            missed = "unknown",
            previous_epoch = %previous.epoch,
            epoch,
            head,
            "stream resumed with a gap: the server's history was lost (new epoch); re-subscribing from the new epoch's start"
        );
        self.gap = Some(Gap { missed: None });
        self.regap = true;
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
        self.counters.recovered_messages.increment(1);
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
mod tests;
