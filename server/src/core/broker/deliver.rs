//! The one path from a stream entry to this replica's hub (the hub's ingest
//! path, [`Fanout::ingest`], which also records what came of it), and where
//! this replica stands in the stream ([`Delivered`]).
//!
//! Two callers share it under one lock (the engine's `delivered` mutex):
//! - the reader, for every entry it reads and for the tail it loads;
//! - the senders of this replica: the committing task ([`commit`]) stages
//!   the entries a publish script call has just appended ([`Delivered::stage`]),
//!   and the first of their senders to run delivers every staged entry that
//!   is next ([`Delivered::deliver_staged`]). The accepting replica's
//!   subscribers then get the message one `XREAD` round trip sooner, from a
//!   server worker thread (so waking them is local to that worker), and the
//!   reader, reading it later, skips it as delivered.
//!
//! Invariants: entries reach the hub in offset order and at most once per
//! epoch; `newest` and the published [`Position`] change only under the
//! lock; only the reader's load changes the epoch (and drops what is
//! staged), so an entry is delivered early only into the epoch it was
//! stamped in; a staged entry at or below `newest` is dropped, never
//! delivered.
//!
//! [`commit`]: super::commit

use super::entry::Entry;
use super::{Position, RedisEngine};
use crate::core::fanout::{Fanout, Ingested, ShuttingDown};
use crate::ops::trace::ReceiveTrace;
use messenger_proto::time::unix_nanos_now;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// This replica's place in the stream: the newest offset handed to the hub,
/// in `epoch` (`None` until the reader's first load).
#[derive(Debug, Default)]
pub(super) struct Delivered {
    pub(super) epoch: Option<Arc<str>>,
    pub(super) newest: u64,
    /// The stream ids of the newest entries delivered in `epoch` (up to
    /// [`RECENT`]), newest last: what the scripts check for a rollback, and
    /// what an entry read again at the same offset must match.
    recent: VecDeque<(u64, String)>,
    /// The newest `sendTime` delivered, in any epoch: the floor of every
    /// stamp this replica asks for.
    pub(super) newest_time: i128,
    /// Entries this replica published in `epoch`, by offset, with their
    /// stream ids, waiting for one of their senders to deliver them.
    staged: BTreeMap<u64, (Entry, String)>,
}

/// How many delivered entries' ids are kept ([`Delivered::conflicts`]).
const RECENT: usize = 256;

impl Delivered {
    /// Moves to `epoch` (the reader's load), where delivery continues after
    /// `newest`; what was staged belonged to the old one.
    pub(super) fn restart(&mut self, epoch: &str, newest: u64) -> Option<Arc<str>> {
        self.staged.clear();
        self.recent.clear();
        self.newest = newest;
        self.epoch.replace(epoch.into())
    }

    /// The stream id of the newest entry delivered, if known ('' if not).
    pub(super) fn newest_id(&self) -> &str {
        match self.recent.back() {
            Some((offset, id)) if *offset == self.newest => id,
            _ => "",
        }
    }

    /// `true` when this replica delivered another entry than `id` at
    /// `offset` of its epoch: the broker rolled back and its offsets now
    /// name other messages.
    pub(super) fn conflicts(&self, offset: u64, id: &str) -> bool {
        offset <= self.newest
            && (self.recent.iter().rev())
                .find(|(o, _)| *o == offset)
                .is_some_and(|(_, delivered)| delivered != id)
    }

    /// Keeps an entry just published by this replica for its senders to
    /// deliver; `false` (dropped, left to the reader) unless it is of the
    /// current epoch and not delivered yet.
    pub(super) fn stage(&mut self, entry: Entry, id: String) -> bool {
        let current = self.epoch.as_deref() == Some(entry.epoch.as_str());
        if !current || entry.offset <= self.newest {
            return false;
        }
        self.staged.insert(entry.offset, (entry, id));
        true
    }

    /// Delivers every staged entry that is next, in order (a gap waits for
    /// the reader); drops those already delivered.
    pub(super) fn deliver_staged(
        &mut self,
        broker: &RedisEngine,
        fanout: &Fanout,
    ) -> Result<(), ShuttingDown> {
        while let Some(entry) = self.staged.first_entry() {
            if *entry.key() > self.newest + 1 {
                break;
            }
            let (offset, (entry, id)) = entry.remove_entry();
            if offset == self.newest + 1 {
                self.deliver(broker, fanout, entry, &id, true)?;
            }
        }
        Ok(())
    }

    /// `true` once `offset` of `epoch` has reached the hub.
    pub(super) fn has(&self, epoch: &str, offset: u64) -> bool {
        self.epoch.as_deref() == Some(epoch) && offset <= self.newest
    }

    /// Hands one entry of the current epoch to the hub, in order, and
    /// publishes the new position. An entry at or below `newest` was
    /// delivered already (read again after a reconnect, or delivered early by
    /// its sender) and is skipped; one past `newest + 1` means the stream was
    /// trimmed past this replica, so history restarts at it. A `live` entry
    /// (not one of a loaded tail) continues its sender's trace:
    /// `broker.receive`, then this replica's `fanout` under it.
    pub(super) fn deliver(
        &mut self,
        broker: &RedisEngine,
        fanout: &Fanout,
        entry: Entry,
        id: &str,
        live: bool,
    ) -> Result<(), ShuttingDown> {
        if entry.offset <= self.newest {
            return Ok(());
        }
        let epoch = self.epoch.clone().unwrap_or_default();
        if entry.offset != self.newest + 1 {
            let ended = fanout.restart(epoch.to_string(), entry.offset - 1);
            tracing::warn!(
                broker = %broker.name,
                expected = self.newest + 1,
                got = entry.offset,
                streams_ended = ended,
                "broker stream trimmed past this replica; history restarts here"
            );
        }
        if live {
            // Live entries only: a loaded tail's age is not lag.
            let lag = unix_nanos_now() - entry.send_time;
            broker.metrics.read_lag.record(lag.max(0) as f64 / 1e9);
        }
        let receive = (entry.traceparent.as_deref())
            .filter(|_| live)
            .and_then(|tp| ReceiveTrace::start(tp, &broker.stream, id, entry.offset));
        let (offset, send_time) = (entry.offset, entry.send_time);
        let message = Ingested {
            author: entry.author,
            text: entry.text,
            traceparent: entry.traceparent,
            send_time,
            offset,
        };
        fanout.ingest(message, receive.as_ref())?;
        drop(receive);
        self.newest = offset;
        self.newest_time = self.newest_time.max(send_time);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((offset, id.to_owned()));
        self.publish(broker);
        Ok(())
    }

    /// Tells waiting senders (`RedisEngine::send`) where this replica stands.
    pub(super) fn publish(&self, broker: &RedisEngine) {
        broker.position.send_replace(Position {
            epoch: self.epoch.clone().unwrap_or_default(),
            offset: self.newest,
        });
    }
}
