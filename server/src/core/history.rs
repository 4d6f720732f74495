//! The engine: where an accepted message gets its place in the one order and
//! how long it is kept for resuming subscribers. The hub owns fan-out; the
//! engine owns sequencing (offset, `sendTime`) and history.
//!
//! Every method runs inside the hub's one lock, so an append, a history
//! snapshot and a subscriber registration never interleave: a resuming
//! subscriber's snapshot ends exactly where its live queue begins.
//!
//! Invariants every engine keeps:
//! - **Offsets.** The first message of an epoch has offset 1; each append is
//!   the previous offset + 1, in the one total order (proto/CONTRACT.md, "Opt-in
//!   extensions").
//! - **Epoch.** A string that changes whenever history could have been lost;
//!   offsets compare only within one epoch.
//! - **History is a suffix.** What [`Engine::read_after`] can return is always
//!   a contiguous run of offsets ending at the newest; evicting drops from the
//!   oldest end only.
//!
//! Sequencing and holding are separate steps, so one history serves both
//! engines:
//! - [`memory::InProcess`] (the embedded default) sequences here:
//!   [`Engine::append`] stamps and holds in one call.
//! - The Redis engine ([`broker`](crate::core::broker), issue 14) sequences in the broker (one
//!   atomic script per message). Each replica's reader then hands the
//!   broker's entries, with the broker's offsets and `sendTime`, to
//!   [`Engine::hold`] through the same lock, and [`Engine::restart`] when the
//!   broker's history was lost (a new epoch) or skipped past this replica.
//!   `read_after` serves the local tail it holds.

pub(crate) mod memory;
pub(crate) mod state;

use messenger_proto::frame::{Encoded, HoldsEncoded};
use messenger_proto::time::to_timestamp;
use std::sync::Arc;
use std::time::Instant;

/// A message as accepted: immutable and shared by every subscriber's queue
/// and by history. Built only by [`Message::new`], which also encodes it for
/// the wire once, so every engine's messages reach subscribers the same way.
#[derive(Debug)]
pub struct Message {
    pub author: String,
    pub text: String,
    /// Nanoseconds since the Unix epoch, UTC.
    pub send_time: i128,
    /// Place in the one total order within the engine's epoch (from 1).
    pub offset: u64,
    /// When the hub accepted it, for delivery latency.
    pub accepted_at: Instant,
    /// W3C traceparent of the message's `fanout` span when its send was
    /// traced; a replay hands it to subscribers that asked for trace context.
    /// A string, not the span itself, so history never holds a span open.
    pub traceparent: Option<String>,
    /// Fields 1–3 of its `ServerMessageResponse`, written as they are to
    /// every subscriber's stream.
    encoded: Encoded,
}

impl Message {
    /// The message `draft` became at `offset` and `send_time` (Unix
    /// nanoseconds, UTC), accepted now; encodes it for the wire.
    pub fn new(draft: Draft, send_time: i128, offset: u64) -> Self {
        let encoded = Encoded::new(&draft.author, &draft.text, &to_timestamp(send_time));
        Self {
            author: draft.author,
            text: draft.text,
            send_time,
            offset,
            accepted_at: Instant::now(),
            traceparent: draft.traceparent,
            encoded,
        }
    }

    /// Fields 1–3 of its `ServerMessageResponse`, encoded at acceptance.
    pub fn encoded(&self) -> &Encoded {
        &self.encoded
    }
}

/// A frame holds its subscriber's share of the message rather than a
/// reference to the bytes ([`messenger_proto::frame::Frame::shared`]).
impl HoldsEncoded for Message {
    fn encoded(&self) -> &Encoded {
        &self.encoded
    }
}

/// A message not yet in the order.
pub struct Draft {
    pub author: String,
    pub text: String,
    /// See [`Message::traceparent`].
    pub traceparent: Option<String>,
}

/// History's current size, for the `messenger_history_*` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub messages: usize,
    /// Accounted bytes: see [`memory::entry_bytes`].
    pub bytes: usize,
    /// Offset of the newest message (0 before the first).
    pub newest: u64,
}

/// Why history cannot continue from a requested position: the stream starts
/// live instead and the caller knows it has a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The position is from another epoch (another process, lost history).
    Epoch,
    /// Messages after the position were evicted; `missed` of them are gone
    /// for good (the rest up to the head would be replayable, but a gap is a gap).
    Evicted { missed: u64 },
    /// The offset is past the newest this epoch has produced.
    Ahead { newest: u64 },
}

/// The sequencing and history of one chat. Called only under the hub's lock.
pub trait Engine: Send + 'static {
    /// The epoch offsets are valid in.
    fn epoch(&self) -> &str;

    /// Gives `draft` the next offset and `sendTime` (strictly increasing,
    /// [`messenger_proto::time::next_send_time`]), keeps it in history
    /// (evicting the oldest past the bounds) and returns it. Fails, taking
    /// nothing, when the stamp cannot be made durable ([`state`]).
    fn append(&mut self, draft: Draft) -> Result<Arc<Message>, state::StateError>;

    /// The hub shut down: nothing more will be appended.
    fn close(&mut self) {}

    /// Keeps `message`, sequenced elsewhere (a broker), in history as the
    /// newest. Its offset must be the newest held + 1 and its `sendTime`
    /// greater than the newest's; callers [`Engine::restart`] first when a
    /// message does not follow (the engine then holds it anyway).
    fn hold(&mut self, message: Message) -> Arc<Message>;

    /// Drops all history and continues in `epoch` after offset `newest`:
    /// history may have been lost, so every position before is a [`Gap`].
    fn restart(&mut self, epoch: String, newest: u64);

    /// Every message after `offset`, oldest first, if history holds all of
    /// them; offset 0 is the position before the first message. `epoch` is the
    /// caller's; a different one is a [`Gap::Epoch`].
    fn read_after(&self, epoch: &str, offset: u64) -> Result<Vec<Arc<Message>>, Gap>;

    fn stats(&self) -> HistoryStats;
}
