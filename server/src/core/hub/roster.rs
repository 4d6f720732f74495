//! The hub's registered subscribers, and the order in which a publish hands
//! them a message.
//!
//! A fan-out visits every subscriber once per message, one after another,
//! and the first one visited is delivered to first. With a fixed order the
//! same subscriber would be first on every message and another one last on
//! every message: that one's latency would be the whole fan-out's, message
//! after message. [`Roster::fan_out`] begins one place further along on each
//! call, so over K messages every subscriber holds every place once (NATS
//! gets the same evenness from Go's randomised map order when it flushes).
//!
//! Invariants:
//! - `index[&slots[i].0] == i` for every `i`; ids are unique.
//! - Removing a subscriber moves the last one into its place (`swap_remove`):
//!   the order changes, which no guarantee depends on. Each subscriber's own
//!   queue keeps the total order; the order *between* subscribers is not
//!   observable to any of them.

use super::subscription::Slot;
use std::collections::HashMap;
use std::sync::Arc;

/// Registered subscribers by id, in fan-out order.
#[derive(Default)]
pub(super) struct Roster {
    slots: Vec<(u64, Arc<Slot>)>,
    index: HashMap<u64, usize>,
    /// Where the next fan-out begins (taken modulo the length).
    start: usize,
}

impl Roster {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Adds subscriber `id`, a fresh one (the hub never reuses an id).
    pub(super) fn insert(&mut self, id: u64, slot: Arc<Slot>) {
        let previous = self.index.insert(id, self.slots.len());
        debug_assert!(previous.is_none(), "subscriber id {id} reused");
        self.slots.push((id, slot));
    }

    /// Removes subscriber `id`, returning its slot if it was registered.
    pub(super) fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let i = self.index.remove(&id)?;
        let (_, slot) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            self.index.insert(*moved, i);
        }
        Some(slot)
    }

    /// Every slot, in no particular order.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.iter().map(|(_, slot)| slot)
    }

    /// Empties the roster, returning every slot.
    pub(super) fn take(&mut self) -> Vec<Arc<Slot>> {
        self.index.clear();
        self.slots.drain(..).map(|(_, slot)| slot).collect()
    }

    /// Calls `visit` on every subscriber once, beginning one place after
    /// where the previous call began, and removes those for which it
    /// returns `false` (after the whole pass, so every subscriber is visited).
    pub(super) fn fan_out(&mut self, mut visit: impl FnMut(u64, &Arc<Slot>) -> bool) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        let start = self.start % n;
        self.start = start + 1;
        let mut dropped = Vec::new();
        let (tail, head) = self.slots.split_at(start);
        for (id, slot) in head.iter().chain(tail) {
            if !visit(*id, slot) {
                dropped.push(*id);
            }
        }
        for id in dropped {
            self.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::SubscribeRequest;
    use crate::core::hub::subscription::SubscriberInfo;

    fn slot(id: u64) -> Arc<Slot> {
        Arc::new(Slot::new(SubscriberInfo::new(
            id,
            &SubscribeRequest::default(),
            0,
        )))
    }

    fn order(r: &mut Roster) -> Vec<u64> {
        let mut seen = Vec::new();
        r.fan_out(|id, _| {
            seen.push(id);
            true
        });
        seen
    }

    #[test]
    fn each_fan_out_begins_one_place_further_so_every_subscriber_is_first_once() {
        let mut r = Roster::default();
        for id in 1..=4 {
            r.insert(id, slot(id));
        }
        let orders: Vec<_> = (0..5).map(|_| order(&mut r)).collect();
        assert_eq!(
            orders,
            [
                vec![1, 2, 3, 4],
                vec![2, 3, 4, 1],
                vec![3, 4, 1, 2],
                vec![4, 1, 2, 3],
                vec![1, 2, 3, 4],
            ]
        );
    }

    #[test]
    fn removal_keeps_the_index_whole_and_visits_everyone_once() {
        let mut r = Roster::default();
        for id in 1..=5 {
            r.insert(id, slot(id));
        }
        assert!(r.remove(2).is_some());
        assert!(r.remove(2).is_none());
        let mut dropped_once = false;
        let mut seen = Vec::new();
        r.fan_out(|id, _| {
            seen.push(id);
            // The fan-out drops subscriber 4 (as a slow one), after the pass.
            let keep = id != 4;
            dropped_once |= !keep;
            keep
        });
        seen.sort_unstable();
        assert_eq!(seen, [1, 3, 4, 5]);
        assert!(dropped_once);
        assert_eq!(r.len(), 3);
        for id in [1, 3, 5] {
            assert!(r.remove(id).is_some(), "{id} is still indexed");
        }
        assert_eq!(r.len(), 0);
        assert!(order(&mut r).is_empty());
    }
}
