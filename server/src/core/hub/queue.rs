//! One subscriber's live queue: bounded, and allocated on demand.
//!
//! It replaces a tokio bounded `mpsc` channel, which allocates its shared
//! state (512 B, cache-padded) and its first block of 32 slots (544 B for
//! our 24-byte entries) when it is created, whether or not a message ever
//! arrives. Measured with heaptrack on 1,000 and 2,000 idle `ReadMessages`
//! streams, that is 1,056 B of every idle subscriber (tests/bench/README.md).
//!
//! Invariants:
//! - **Nothing is allocated until a message arrives.** An idle subscriber's
//!   queue is an empty `VecDeque` (no buffer) inside its [`Slot`].
//! - **Bounded.** [`Queue::push`] refuses a message once `capacity` are
//!   queued; messages the stream has taken into its batch no longer count.
//! - **Order.** Messages come out in the order they were pushed.
//! - **Closing wakes.** [`Queue::close`] wakes a waiting stream, which then
//!   takes what is still queued before it learns that the queue is closed.
//! - **A cut-off queue is emptied.** [`Queue::take_all`] hands back what
//!   is queued (the hub drops it outside its lock), so a stream that will
//!   never read it does not pin it.
//! - **No retained burst.** A queue drained empty, and a finished batch,
//!   keep at most [`BATCH_MAX`] slots of buffer; a larger one, left by a
//!   burst, is freed.

use std::collections::VecDeque;
use std::mem;
use std::task::{Context, Poll, Waker};

/// Most live messages taken from the queue in one wake-up.
pub const BATCH_MAX: usize = 64;

/// The messages queued for one subscriber, and the waker of its stream.
#[derive(Debug)]
pub(super) struct Queue<T> {
    items: VecDeque<T>,
    /// The stream waiting for a message, if it is waiting.
    waker: Option<Waker>,
    /// The hub no longer pushes to this queue.
    closed: bool,
}

/// Why [`Queue::push`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushError {
    /// `capacity` messages are queued.
    Full,
    /// The queue was closed.
    Closed,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            waker: None,
            closed: false,
        }
    }
}

impl<T> Queue<T> {
    /// Appends `item` unless `capacity` items are queued or the queue is
    /// closed. Returns the waker to wake once the caller's lock is released.
    pub(super) fn push(&mut self, item: T, capacity: usize) -> Result<Option<Waker>, PushError> {
        if self.closed {
            return Err(PushError::Closed);
        }
        if self.items.len() >= capacity {
            return Err(PushError::Full);
        }
        self.items.push_back(item);
        Ok(self.waker.take())
    }

    /// The waiting stream's waker, taken: the caller wakes it (the stream
    /// registers again when it next finds the queue empty).
    pub(super) fn take_waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Closes the queue; what is queued stays to be taken. Returns the waker
    /// to wake once the caller's lock is released.
    pub(super) fn close(&mut self) -> Option<Waker> {
        self.closed = true;
        self.waker.take()
    }

    /// Moves up to [`BATCH_MAX`] messages into the empty `batch`, oldest
    /// first: `Ready(n)` with `n > 0`, `Ready(0)` once the queue is closed
    /// and empty, or `Pending` (the stream's waker is kept for the next push).
    pub(super) fn take_batch(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<T>,
    ) -> Poll<usize> {
        debug_assert!(batch.is_empty(), "the previous batch is finished");
        if batch.capacity() > BATCH_MAX {
            *batch = VecDeque::new();
        }
        if self.items.is_empty() {
            if self.closed {
                return Poll::Ready(0);
            }
            match &mut self.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if self.items.len() <= BATCH_MAX {
            // Swap buffers: no copy, and the two buffers are reused in turn.
            mem::swap(&mut self.items, batch);
        } else {
            batch.extend(self.items.drain(..BATCH_MAX));
        }
        if self.items.is_empty() && self.items.capacity() > BATCH_MAX {
            self.items = VecDeque::new();
        }
        Poll::Ready(batch.len())
    }

    /// Takes everything queued, to be dropped outside the caller's lock: a
    /// subscriber cut off as slow never reads it, and its stream may stay
    /// open for as long as its peer keeps the connection.
    pub(super) fn take_all(&mut self) -> VecDeque<T> {
        mem::take(&mut self.items)
    }

    /// Messages queued and not yet taken into a batch.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The capacity of the queue's buffer (tests: allocation on demand).
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        self.items.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn take(q: &mut Queue<u32>, batch: &mut VecDeque<u32>) -> Poll<Vec<u32>> {
        let mut cx = Context::from_waker(Waker::noop());
        q.take_batch(&mut cx, batch)
            .map(|_| batch.drain(..).collect())
    }

    #[test]
    fn nothing_is_allocated_until_a_message_arrives() {
        let mut q = Queue::<u32>::default();
        let mut batch = VecDeque::new();
        assert_eq!(q.allocated(), 0);
        assert!(take(&mut q, &mut batch).is_pending());
        assert_eq!((q.allocated(), batch.capacity()), (0, 0));
        q.push(1, 8).unwrap();
        assert!(q.allocated() > 0);
    }

    #[test]
    fn bounded_and_in_order_and_a_batch_frees_room() {
        let mut q = Queue::default();
        let mut batch = VecDeque::new();
        for i in 0..3 {
            q.push(i, 3).unwrap();
        }
        assert_eq!(q.push(3, 3).err(), Some(PushError::Full));
        assert_eq!(q.len(), 3);
        assert_eq!(take(&mut q, &mut batch), Poll::Ready(vec![0, 1, 2]));
        q.push(3, 3).unwrap();
        assert_eq!(take(&mut q, &mut batch), Poll::Ready(vec![3]));
    }

    #[test]
    fn a_batch_holds_at_most_batch_max_and_a_burst_buffer_is_freed() {
        let mut q = Queue::default();
        let mut batch = VecDeque::new();
        let n = 10 * BATCH_MAX as u32 + 5;
        for i in 0..n {
            q.push(i, usize::MAX).unwrap();
        }
        let mut got = Vec::new();
        while let Poll::Ready(b) = take(&mut q, &mut batch) {
            assert!(
                !b.is_empty() && b.len() <= BATCH_MAX,
                "batch of {}",
                b.len()
            );
            got.extend(b);
        }
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert!(q.allocated() <= BATCH_MAX, "queue keeps {}", q.allocated());
        q.push(0, usize::MAX).unwrap();
        assert_eq!(take(&mut q, &mut batch), Poll::Ready(vec![0]));
        assert!(
            batch.capacity() <= BATCH_MAX,
            "batch keeps {}",
            batch.capacity()
        );
    }

    #[test]
    fn push_and_close_wake_a_waiting_stream_which_drains_before_it_ends() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut q = Queue::default();
        let mut batch = VecDeque::new();
        assert!(q.take_batch(&mut cx, &mut batch).is_pending());
        q.push(7, 8)
            .unwrap()
            .expect("the waiting stream's waker")
            .wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Not waiting any more: a second push has nobody to wake.
        assert!(q.push(8, 8).unwrap().is_none());
        assert_eq!(q.take_batch(&mut cx, &mut batch), Poll::Ready(2));
        batch.clear();
        assert!(q.take_batch(&mut cx, &mut batch).is_pending());
        q.close().expect("the waiting stream's waker").wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(q.push(9, 8).err(), Some(PushError::Closed));
        assert_eq!(q.take_batch(&mut cx, &mut batch), Poll::Ready(0));
    }
}
