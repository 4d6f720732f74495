//! Unit tests of the hub's invariants, without gRPC.

use super::*;
use crate::core::history::memory::{Bounds, InProcess};
use proptest::prelude::*;
use std::task::{Context, Poll};

mod batch;
mod resume;

/// A hub with no limit on subscribers, over a history of the server's
/// default size (100,000 messages, 64 MiB).
fn new_hub(queue_capacity: usize) -> Arc<Hub> {
    with_max_subscribers(queue_capacity, usize::MAX)
}

fn with_max_subscribers(queue_capacity: usize, max_subscribers: usize) -> Arc<Hub> {
    let bounds = Bounds {
        messages: 100_000,
        bytes: 64 << 20,
    };
    Hub::with_engine(
        queue_capacity,
        max_subscribers,
        Box::new(InProcess::new(bounds)),
    )
}

fn drain(sub: &mut Subscription) -> Vec<Arc<Message>> {
    drain_deliveries(sub)
        .into_iter()
        .map(|d| d.message)
        .collect()
}

fn drain_deliveries(sub: &mut Subscription) -> Vec<Delivery> {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut out = Vec::new();
    while let Poll::Ready(Ok(m)) = sub.poll_recv(&mut cx) {
        out.push(m);
    }
    out
}

fn send(hub: &Hub, text: &str) -> Published {
    hub.publish("a".into(), text.into(), None).unwrap()
}

#[test]
fn subscriber_gets_only_messages_after_subscribing() {
    let hub = new_hub(16);
    send(&hub, "before");
    let mut sub = hub.subscribe().unwrap();
    let p = send(&hub, "after");
    assert_eq!(p.delivered_to, 1);
    let got = drain(&mut sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "after");
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_waiting_stream_is_woken_by_a_message_by_a_cut_off_and_by_shutdown() {
    let hub = new_hub(1);
    let wakes = Arc::new(Wakes::default());
    let waker = std::task::Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let woken = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);
    let mut slow = hub.subscribe().unwrap();
    assert!(slow.poll_recv(&mut cx).is_pending());
    send(&hub, "fills the queue");
    assert_eq!(woken(), 1);
    send(&hub, "overflows it");
    assert!(matches!(
        slow.poll_recv(&mut cx),
        Poll::Ready(Err(Disconnect::Slow))
    ));
    let mut idle = hub.subscribe().unwrap();
    assert!(idle.poll_recv(&mut cx).is_pending());
    hub.shutdown();
    assert_eq!(woken(), 2);
    assert!(matches!(
        idle.poll_recv(&mut cx),
        Poll::Ready(Err(Disconnect::Shutdown))
    ));
}

#[test]
fn full_queue_disconnects_as_slow_and_others_keep_receiving() {
    let hub = new_hub(2);
    let mut slow = hub.subscribe().unwrap();
    let mut fast = hub.subscribe().unwrap();
    for i in 0..2 {
        send(&hub, &i.to_string());
        assert_eq!(drain(&mut fast).len(), 1);
    }
    let p = send(&hub, "overflow");
    assert_eq!((p.delivered_to, p.dropped_slow), (1, 1));
    assert_eq!(hub.subscribers(), 1);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(
        slow.poll_recv(&mut cx),
        Poll::Ready(Err(Disconnect::Slow))
    ));
    assert_eq!(drain(&mut fast).len(), 1);
}

#[test]
fn subscriber_cap_refuses_the_next_and_leaves_the_rest_alone() {
    let hub = with_max_subscribers(4, 2);
    let mut a = hub.subscribe().unwrap();
    let b = hub.subscribe().unwrap();
    assert!(matches!(
        hub.subscribe(),
        Err(SubscribeError::Full { max: 2 })
    ));
    assert_eq!(send(&hub, "still flowing").delivered_to, 2);
    assert_eq!(drain(&mut a).len(), 1);
    drop(b);
    let _c = hub
        .subscribe()
        .expect("a slot freed by a leaving subscriber is reusable");
}

#[test]
fn dropping_a_subscription_removes_it_at_once() {
    let hub = new_hub(4);
    let subs: Vec<_> = (0..1000).map(|_| hub.subscribe().unwrap()).collect();
    assert_eq!(hub.subscribers(), 1000);
    drop(subs);
    assert_eq!(hub.subscribers(), 0);
}

#[test]
fn shutdown_drains_queued_then_ends() {
    let hub = new_hub(8);
    let mut sub = hub.subscribe().unwrap();
    send(&hub, "queued");
    hub.shutdown();
    assert!(hub.publish("a".into(), "late".into(), None).is_err());
    assert!(hub.subscribe().is_err());
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(sub.poll_recv(&mut cx), Poll::Ready(Ok(d)) if d.message.text == "queued"));
    assert!(matches!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Err(Disconnect::Shutdown))
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe,
    Unsubscribe(usize),
    Send,
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Subscribe),
        1 => (0usize..8).prop_map(Op::Unsubscribe),
        4 => Just(Op::Send),
        2 => (0usize..8).prop_map(Op::Read),
    ]
}

proptest! {
    /// Under any interleaving, each live subscriber sees exactly the messages
    /// published while it was subscribed, in publish order, with strictly
    /// increasing sendTime; a subscriber overflowing its queue is told so.
    #[test]
    fn every_subscriber_sees_its_window_in_order(ops in proptest::collection::vec(op(), 1..200)) {
        let hub = new_hub(4);
        // (subscription, expected texts not yet read, disconnected as slow)
        let mut live: Vec<(Subscription, Vec<String>, bool)> = Vec::new();
        let mut n = 0u32;
        let mut last_time = 0i128;
        for op in ops {
            match op {
                Op::Subscribe => live.push((hub.subscribe().unwrap(), Vec::new(), false)),
                Op::Unsubscribe(i) if !live.is_empty() => { live.remove(i % live.len()); }
                Op::Send => {
                    n += 1;
                    let p = send(&hub, &n.to_string());
                    prop_assert!(p.message.send_time > last_time);
                    last_time = p.message.send_time;
                    for (_, expected, slow) in live.iter_mut().filter(|(_, _, slow)| !*slow) {
                        if expected.len() == 4 { *slow = true } else { expected.push(n.to_string()) }
                    }
                }
                Op::Read(i) if !live.is_empty() => {
                    let idx = i % live.len();
                    let (sub, expected, slow) = &mut live[idx];
                    let got: Vec<String> = drain(sub).iter().map(|m| m.text.clone()).collect();
                    if *slow {
                        prop_assert!(got.is_empty());
                        live.remove(idx);
                    } else {
                        prop_assert_eq!(&got, &*expected);
                        expected.clear();
                    }
                }
                _ => {}
            }
            let connected = live.iter().filter(|(_, _, slow)| !*slow).count();
            prop_assert_eq!(hub.subscribers(), connected);
        }
    }
}

/// Issue 26, item 4: a subscriber cut off as slow whose stream is never
/// polled again (a peer that gives it no window) holds none of its queue,
/// and counts against the limit until its subscription is dropped.
#[test]
fn a_cut_off_subscriber_frees_its_queue_at_once_and_counts_until_dropped() {
    let hub = with_max_subscribers(2, 1);
    let stuck = hub.subscribe().unwrap();
    let first = send(&hub, "a").message;
    send(&hub, "b");
    assert_eq!(Arc::strong_count(&first), 3, "history and the queue");
    let p = send(&hub, "overflows");
    assert_eq!(p.dropped_slow, 1);
    assert_eq!(
        Arc::strong_count(&first),
        2,
        "only history (and this test) still hold it"
    );
    assert_eq!((hub.subscribers(), hub.cut_open()), (0, 1));
    assert_eq!(
        hub.subscribe().err(),
        Some(SubscribeError::Full { max: 1 }),
        "the open, cut-off stream still counts"
    );
    drop(stuck);
    assert_eq!(hub.cut_open(), 0);
    let _next = hub
        .subscribe()
        .expect("room once the cut-off stream is gone");
}

/// A trace that records nothing (it only hands on the sender's context)
/// rides only to the subscribers that asked for a trace context; one that
/// records rides to every subscriber. History keeps the context either way.
#[test]
fn a_trace_that_records_nothing_rides_only_to_those_who_asked() {
    const SENDER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    struct Trace {
        records: bool,
    }
    impl MessageTrace for Trace {
        fn traceparent(&self) -> Option<String> {
            Some(SENDER.to_owned())
        }
        fn deliver(&self, _: u64, _: Duration, want: bool) -> Option<String> {
            want.then(|| SENDER.to_owned())
        }
        fn records(&self) -> bool {
            self.records
        }
    }
    let hub = new_hub(16);
    let mut plain = hub.subscribe().unwrap();
    let asks = SubscribeRequest {
        wants_trace: true,
        ..SubscribeRequest::default()
    };
    let mut asks = hub.subscribe_with(asks).unwrap();
    for records in [false, true] {
        let trace: Arc<dyn MessageTrace> = Arc::new(Trace { records });
        hub.publish("a".into(), "t".into(), Some(trace)).unwrap();
        let [p] = &drain_deliveries(&mut plain)[..] else {
            panic!("one delivery")
        };
        let [a] = &drain_deliveries(&mut asks)[..] else {
            panic!("one delivery")
        };
        assert_eq!(p.trace.is_some(), records, "records: {records}");
        assert!(a.trace.is_some(), "records: {records}");
        for d in [p, a] {
            assert_eq!(d.message.traceparent.as_deref(), Some(SENDER));
        }
    }
}
