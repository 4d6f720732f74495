//! Resume: history after a position, then live, with no seam; the edges of
//! what history can serve; and the seam under concurrent publishes.

use super::{drain, drain_deliveries, send};
use crate::core::history::memory::{Bounds, InProcess};
use crate::core::hub::*;
use proptest::prelude::*;
use std::sync::Arc;

fn hub(queue: usize, history: usize) -> Arc<Hub> {
    let bounds = Bounds {
        messages: history,
        bytes: usize::MAX,
    };
    Hub::with_engine(
        queue,
        usize::MAX,
        Box::new(InProcess::with_epoch(bounds, "e".into())),
    )
}

fn since(hub: &Arc<Hub>, epoch: &str, offset: u64) -> Subscription {
    hub.subscribe_with(SubscribeRequest {
        since: Some((epoch.into(), offset)),
        ..Default::default()
    })
    .unwrap()
}

fn offsets(sub: &mut Subscription) -> Vec<u64> {
    drain(sub).iter().map(|m| m.offset).collect()
}

#[test]
fn resume_replays_after_the_offset_then_goes_live() {
    let hub = hub(16, 100);
    (0..5).for_each(|i| drop(send(&hub, &i.to_string())));
    let mut sub = since(&hub, "e", 2);
    assert_eq!(sub.resume(), Resume::Recovered { replayed: 3 });
    send(&hub, "live");
    let got = drain_deliveries(&mut sub);
    let seen: Vec<(u64, bool)> = got.iter().map(|d| (d.message.offset, d.replayed)).collect();
    assert_eq!(seen, [(3, true), (4, true), (5, true), (6, false)]);
}

#[test]
fn resume_at_the_edges() {
    let hub = hub(16, 3);
    // Before anything was sent, offset 0 is the (empty) start.
    assert_eq!(
        since(&hub, "e", 0).resume(),
        Resume::Recovered { replayed: 0 }
    );
    (0..5).for_each(|i| drop(send(&hub, &i.to_string())));
    // History holds 3, 4, 5: offset 0 (before the first message) is a
    // position like any other, and 1 and 2 are gone.
    let mut start = since(&hub, "e", 0);
    assert_eq!(start.resume(), Resume::Gap(Gap::Evicted { missed: 2 }));
    let mut newest = since(&hub, "e", 5);
    assert_eq!(newest.resume(), Resume::Recovered { replayed: 0 });
    let mut evicted = since(&hub, "e", 1);
    assert_eq!(evicted.resume(), Resume::Gap(Gap::Evicted { missed: 1 }));
    let mut foreign = since(&hub, "other", 5);
    assert_eq!(foreign.resume(), Resume::Gap(Gap::Epoch));
    let mut ahead = since(&hub, "e", 9);
    assert_eq!(ahead.resume(), Resume::Gap(Gap::Ahead { newest: 5 }));
    send(&hub, "live");
    // A gap starts live, exactly as a plain subscribe does.
    for sub in [
        &mut start,
        &mut newest,
        &mut evicted,
        &mut foreign,
        &mut ahead,
    ] {
        assert_eq!(offsets(sub), [6]);
    }
}

#[test]
fn a_replay_longer_than_the_queue_is_not_cut_off() {
    let hub = hub(4, 1000);
    (0..100).for_each(|i| drop(send(&hub, &i.to_string())));
    let mut sub = since(&hub, "e", 0);
    (0..4).for_each(|i| drop(send(&hub, &i.to_string())));
    assert_eq!(offsets(&mut sub), (1..=104).collect::<Vec<_>>());
    // Live messages past the allowance while the replay is unread still cut it.
    drop(sub);
    let mut lagging = since(&hub, "e", 0);
    (0..4).for_each(|i| assert_eq!(send(&hub, &i.to_string()).dropped_slow, 0));
    assert_eq!(send(&hub, "over").dropped_slow, 1);
    assert!(drain(&mut lagging).is_empty());
}

#[test]
fn shutdown_delivers_the_replay_then_ends() {
    let hub = hub(4, 10);
    send(&hub, "a");
    let mut sub = since(&hub, "e", 0);
    hub.shutdown();
    assert_eq!(offsets(&mut sub), [1]);
}

#[test]
fn the_dump_shows_depth_and_progress() {
    let hub = hub(8, 10);
    send(&hub, "a");
    let mut resumed = since(&hub, "e", 0);
    let _plain = hub.subscribe().unwrap();
    send(&hub, "b");
    let before = hub.dump();
    assert_eq!(before.len(), 2);
    assert_eq!(
        (
            before[0].queue_depth,
            before[0].replay_pending,
            before[0].resumed
        ),
        (1, 1, true)
    );
    assert_eq!((before[1].queue_depth, before[1].resumed), (1, false));
    assert_eq!(offsets(&mut resumed), [1, 2]);
    let after = &hub.dump()[0];
    assert_eq!(
        (after.queue_depth, after.delivered, after.last_offset),
        (0, 2, 2)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Publishers on real threads race one resuming subscriber: whatever the
    /// interleaving, it receives every offset after its position exactly once,
    /// in order, history first and live after, with sendTime rising.
    #[test]
    fn resume_under_concurrent_publishes_has_no_gap_and_no_duplicate(
        threads in 1usize..4,
        per_thread in 1usize..150,
        wait_for in 0u64..200,
        back in 0u64..50,
    ) {
        let total = (threads * per_thread) as u64;
        let hub = hub(threads * per_thread + 1, threads * per_thread);
        let publishers: Vec<_> = (0..threads)
            .map(|t| {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        hub.publish(t.to_string(), i.to_string(), None).unwrap();
                    }
                })
            })
            .collect();
        // Subscribe somewhere in the middle of the race.
        let target = wait_for.min(total);
        while hub.history().newest < target {
            std::thread::yield_now();
        }
        let offset = hub.history().newest.saturating_sub(back);
        let mut sub = since(&hub, "e", offset);
        let recovered = matches!(sub.resume(), Resume::Recovered { .. });
        prop_assert!(recovered);
        for p in publishers {
            p.join().unwrap();
        }
        let got = drain_deliveries(&mut sub);
        let offsets: Vec<u64> = got.iter().map(|d| d.message.offset).collect();
        prop_assert_eq!(offsets, ((offset + 1)..=total).collect::<Vec<_>>());
        let replayed = got.iter().take_while(|d| d.replayed).count();
        prop_assert!(got[replayed..].iter().all(|d| !d.replayed), "history first, then live");
        prop_assert!(got.windows(2).all(|w| w[0].message.send_time < w[1].message.send_time));
    }
}
