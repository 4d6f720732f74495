//! The in-process engine (the embedded default): offsets and `sendTime`
//! stamped in this process, history in a ring bounded by a message count and
//! a byte budget, whichever is reached first; the epoch is a random id per
//! process start, since history dies with the process.
//!
//! The same ring is the local tail a Redis replica holds: it then never
//! appends, only [`Engine::hold`]s the broker's entries and
//! [`Engine::restart`]s with the broker's epoch.
//!
//! `sendTime` is strictly increasing within the process. Across restarts
//! only with a [`SendTimeMark`] (`MESSENGER_STATE_DIR`): stamps start after
//! the mark of the runs before, whatever the clock says. Without one, a
//! restart on a clock that is behind stamps earlier than what clients hold.

use super::state::{SendTimeMark, StateError};
use super::{Draft, Engine, Gap, HistoryStats, Message};
use messenger_proto::time::{next_send_time, unix_nanos_now};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;

/// Fixed cost charged per history entry on top of its strings: the shared
/// message (with the `Arc` counters) and its ring slot.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Message>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Arc<Message>>();

/// Bytes one message is charged in history: author, text and traceparent
/// capacities, its encoded form ([`Message::encoded`]) plus
/// [`ENTRY_OVERHEAD_BYTES`]. Allocator rounding is not counted.
pub(crate) fn entry_bytes(m: &Message) -> usize {
    m.author.capacity()
        + m.text.capacity()
        + m.traceparent.as_ref().map_or(0, String::capacity)
        + m.encoded().len()
        + ENTRY_OVERHEAD_BYTES
}

/// History bounds; a message is evicted once either is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Most messages kept (0: no history, resume always reports a gap).
    pub messages: usize,
    /// Most accounted bytes kept ([`entry_bytes`]).
    pub bytes: usize,
}

pub(crate) struct InProcess {
    epoch: String,
    bounds: Bounds,
    last_send_time: i128,
    /// Offset of the newest message; 0 before the first.
    newest: u64,
    history: VecDeque<Arc<Message>>,
    bytes: usize,
    /// Keeps `sendTime` increasing across restarts (`MESSENGER_STATE_DIR`).
    mark: Option<SendTimeMark>,
}

impl InProcess {
    /// An engine with a fresh random epoch (16 hex digits).
    pub(crate) fn new(bounds: Bounds) -> Self {
        let epoch = format!("{:016x}", rand::rng().random::<u64>());
        Self::with_epoch(bounds, epoch)
    }

    /// An engine with a given epoch (tests).
    pub(crate) fn with_epoch(bounds: Bounds, epoch: String) -> Self {
        Self {
            epoch,
            bounds,
            last_send_time: 0,
            newest: 0,
            history: VecDeque::new(),
            bytes: 0,
            mark: None,
        }
    }

    /// Stamps after `mark`'s floor and covers every stamp with it.
    pub(crate) fn with_mark(mut self, mark: SendTimeMark) -> Self {
        self.last_send_time = self.last_send_time.max(mark.floor());
        self.mark = Some(mark);
        self
    }

    fn evict(&mut self) {
        while self.history.len() > self.bounds.messages || self.bytes > self.bounds.bytes {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.bytes -= entry_bytes(&old);
        }
    }

    /// Offset of the oldest message held; `newest + 1` when history is empty.
    fn oldest(&self) -> u64 {
        self.history.front().map_or(self.newest + 1, |m| m.offset)
    }
}

impl Engine for InProcess {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn append(&mut self, draft: Draft) -> Result<Arc<Message>, StateError> {
        let send_time = next_send_time(self.last_send_time, unix_nanos_now());
        if let Some(mark) = &mut self.mark {
            mark.cover(send_time)?;
        }
        self.last_send_time = send_time;
        self.newest += 1;
        let message = Arc::new(Message::new(draft, send_time, self.newest));
        self.bytes += entry_bytes(&message);
        self.history.push_back(Arc::clone(&message));
        self.evict();
        Ok(message)
    }

    fn close(&mut self) {
        if let Some(mark) = &mut self.mark {
            mark.close(self.last_send_time);
        }
    }

    fn hold(&mut self, message: Message) -> Arc<Message> {
        self.last_send_time = message.send_time;
        self.newest = message.offset;
        let message = Arc::new(message);
        self.bytes += entry_bytes(&message);
        self.history.push_back(Arc::clone(&message));
        self.evict();
        message
    }

    fn restart(&mut self, epoch: String, newest: u64) {
        self.epoch = epoch;
        self.newest = newest;
        self.history.clear();
        self.bytes = 0;
    }

    fn read_after(&self, epoch: &str, offset: u64) -> Result<Vec<Arc<Message>>, Gap> {
        if epoch != self.epoch {
            return Err(Gap::Epoch);
        }
        if offset > self.newest {
            return Err(Gap::Ahead {
                newest: self.newest,
            });
        }
        // Offset 0 is a position like any other: before the epoch's first
        // message. A caller holding it (a `messenger-head-offset` of 0) has
        // missed whatever history no longer holds.
        let oldest = self.oldest();
        if offset + 1 < oldest {
            return Err(Gap::Evicted {
                missed: oldest - 1 - offset,
            });
        }
        // History is contiguous, so offset + 1 sits at index offset + 1 - oldest.
        let skip = usize::try_from(offset + 1 - oldest).unwrap_or(usize::MAX);
        Ok(self.history.iter().skip(skip).cloned().collect())
    }

    fn stats(&self) -> HistoryStats {
        HistoryStats {
            messages: self.history.len(),
            bytes: self.bytes,
            newest: self.newest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(messages: usize, bytes: usize) -> InProcess {
        InProcess::with_epoch(Bounds { messages, bytes }, "e".into())
    }

    fn append(e: &mut InProcess, text: &str) -> Arc<Message> {
        e.append(Draft {
            author: "a".into(),
            text: text.into(),
            traceparent: None,
        })
        .expect("no mark to write")
    }

    fn offsets(r: Result<Vec<Arc<Message>>, Gap>) -> Vec<u64> {
        r.expect("recoverable").iter().map(|m| m.offset).collect()
    }

    #[test]
    fn offsets_start_at_one_and_rise_by_one_with_send_time() {
        let mut e = engine(10, usize::MAX);
        let a = append(&mut e, "x");
        let b = append(&mut e, "y");
        assert_eq!((a.offset, b.offset), (1, 2));
        assert!(b.send_time > a.send_time);
    }

    #[test]
    fn read_after_at_the_edges() {
        let mut e = engine(3, usize::MAX);
        assert_eq!(offsets(e.read_after("e", 0)), Vec::<u64>::new());
        for i in 0..5 {
            append(&mut e, &i.to_string());
        }
        // Held: 3, 4, 5.
        assert_eq!(e.read_after("e", 0).err(), Some(Gap::Evicted { missed: 2 }));
        assert_eq!(offsets(e.read_after("e", 2)), [3, 4, 5]);
        assert_eq!(offsets(e.read_after("e", 4)), [5]);
        assert_eq!(offsets(e.read_after("e", 5)), Vec::<u64>::new());
        assert_eq!(e.read_after("e", 1).err(), Some(Gap::Evicted { missed: 1 }));
        assert_eq!(e.read_after("e", 6).err(), Some(Gap::Ahead { newest: 5 }));
        assert_eq!(e.read_after("other", 5).err(), Some(Gap::Epoch));
    }

    #[test]
    fn byte_budget_evicts_before_the_count_does() {
        let text = "x".repeat(100);
        let one = entry_bytes(&append(&mut engine(1, usize::MAX), &text));
        let mut e = engine(1000, 3 * one);
        for _ in 0..10 {
            append(&mut e, &text);
        }
        let s = e.stats();
        assert_eq!((s.messages, s.bytes, s.newest), (3, 3 * one, 10));
    }

    #[test]
    fn zero_history_always_reports_a_gap_after_the_first_message() {
        let mut e = engine(0, usize::MAX);
        append(&mut e, "x");
        assert_eq!(e.stats().messages, 0);
        assert_eq!(offsets(e.read_after("e", 1)), Vec::<u64>::new());
        append(&mut e, "y");
        assert_eq!(e.read_after("e", 1).err(), Some(Gap::Evicted { missed: 1 }));
    }

    #[test]
    fn held_messages_keep_their_offsets_and_restart_forgets_everything() {
        let mut e = engine(10, usize::MAX);
        let held = |offset, send_time| {
            let draft = Draft {
                author: "a".into(),
                text: "t".into(),
                traceparent: None,
            };
            Message::new(draft, send_time, offset)
        };
        e.restart("broker".into(), 40);
        assert_eq!(e.read_after("broker", 40).unwrap().len(), 0);
        e.hold(held(41, 5));
        e.hold(held(42, 7));
        assert_eq!(offsets(e.read_after("broker", 40)), [41, 42]);
        assert_eq!(e.read_after("e", 40).err(), Some(Gap::Epoch));
        e.restart("next".into(), 0);
        assert_eq!(e.stats(), HistoryStats::default());
        assert_eq!(e.read_after("broker", 42).err(), Some(Gap::Epoch));
        assert_eq!(
            e.read_after("next", 1).err(),
            Some(Gap::Ahead { newest: 0 })
        );
    }

    #[test]
    fn epochs_differ_per_engine() {
        let b = Bounds {
            messages: 1,
            bytes: 1,
        };
        assert_ne!(InProcess::new(b).epoch(), InProcess::new(b).epoch());
    }
}
