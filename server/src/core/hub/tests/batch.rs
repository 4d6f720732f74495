//! What a coalescing writer is told before it takes a batch
//! ([`Subscription::next_batch_could_grow`]): only a partial batch waiting in
//! the queue, with nothing in hand, could still grow.

use super::{new_hub, send};
use crate::core::hub::*;
use std::task::{Context, Poll, Waker};

#[test]
fn only_a_partial_batch_waiting_with_nothing_in_hand_could_grow() {
    let hub = new_hub(4 * BATCH_MAX);
    let mut sub = hub.subscribe().unwrap();
    assert!(!sub.next_batch_could_grow(), "nothing queued");
    send(&hub, "1");
    assert!(sub.next_batch_could_grow(), "one queued");
    send(&hub, "2");
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(sub.poll_recv(&mut cx), Poll::Ready(Ok(d)) if d.message.text == "1"));
    send(&hub, "3");
    assert!(
        !sub.next_batch_could_grow(),
        "a batch in hand: the next call takes nothing from the queue"
    );
    assert!(matches!(sub.poll_recv(&mut cx), Poll::Ready(Ok(d)) if d.message.text == "2"));
    assert!(
        sub.next_batch_could_grow(),
        "the batch is done; 3 is queued"
    );
    for i in 4..=BATCH_MAX + 2 {
        send(&hub, &i.to_string());
    }
    assert!(!sub.next_batch_could_grow(), "a full batch is queued");
    let texts: Vec<String> = super::drain(&mut sub)
        .iter()
        .map(|m| m.text.clone())
        .collect();
    let expected: Vec<String> = (3..=BATCH_MAX + 2).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected, "in order, nothing lost");
}
