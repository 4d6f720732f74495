//! One task per connection: hyper's per-stream futures run on the task of
//! the connection they belong to, not each on a task of its own.
//!
//! hyper's HTTP/2 server hands every request's future (its `H2Stream`: the
//! service call, then the response body, frame by frame, into h2) to an
//! executor. With `tokio::spawn` as that executor, a message fanned out to a
//! `ReadMessages` subscriber takes two task wake-ups: the publish wakes the
//! stream's task, which polls the body and queues the frame in h2, which wakes
//! the connection's task, which writes. [`InlineExecutor`] instead queues the
//! future for [`Inline`], the connection's own future, which polls its stream
//! futures and then the connection in one pass: one wake-up, and the write
//! follows in the same poll.
//!
//! Invariants:
//! - **No lost wake-up.** Two flags say what needs polling: the streams
//!   (a stream future woke, or hyper queued a new one) and the connection
//!   (h2 woke it). A wake-up sets its flag, then wakes the task only if no
//!   pass is running; a pass clears a flag before polling what it covers and
//!   re-checks both flags after its last poll, all `SeqCst`, so a wake-up that
//!   races the end of a pass is seen by one side or the other.
//! - **Fairness.** A poll makes at most [`PASSES`] passes; with work left it
//!   wakes itself and yields to the scheduler, as a busy task should.
//! - When the connection's future completes, the stream futures still held
//!   are dropped with it, as aborting their tasks would (hyper has already
//!   reset or finished those streams).
//!
//! The cost: the streams of one connection share one task, so one HTTP/2
//! connection's requests run one at a time on one worker. Every request here
//! is short (a publish under one lock, a queue read), and each subscriber
//! holds its own connection. tests/bench/README.md has the measurement.

use atomic_waker::AtomicWaker;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Most passes (streams, then connection) one poll of [`Inline`] makes.
const PASSES: usize = 8;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection: queues each future for the
/// connection's [`Inline`]. Make one per connection ([`Inline::new`]).
#[derive(Clone, Default)]
pub(super) struct InlineExecutor {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Futures hyper handed over since the last pass.
    spawned: Mutex<Vec<StreamFuture>>,
    streams: Flag,
    conn: Flag,
    /// A pass is running: wake-ups only set their flag.
    in_pass: AtomicBool,
    /// The task that polls [`Inline`].
    task: AtomicWaker,
}

/// Set when what it covers needs a poll; starts set, so the first poll
/// polls everything.
struct Flag(AtomicBool);

impl Default for Flag {
    fn default() -> Self {
        Self(AtomicBool::new(true))
    }
}

impl Shared {
    fn wake(&self, flag: &Flag) {
        flag.0.store(true, SeqCst);
        if !self.in_pass.load(SeqCst) {
            self.task.wake();
        }
    }

    fn pending(&self) -> bool {
        self.streams.0.load(SeqCst) || self.conn.0.load(SeqCst)
    }
}

/// The waker the stream futures see (through `FuturesUnordered`).
struct StreamsWake(Arc<Shared>);
/// The waker the connection sees.
struct ConnWake(Arc<Shared>);

impl Wake for StreamsWake {
    fn wake(self: Arc<Self>) {
        self.0.wake(&self.0.streams);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake(&self.0.streams);
    }
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.0.wake(&self.0.conn);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake(&self.0.conn);
    }
}

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for InlineExecutor {
    fn execute(&self, future: F) {
        let mut spawned = self
            .shared
            .spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        spawned.push(Box::pin(future));
        drop(spawned);
        self.shared.wake(&self.shared.streams);
    }
}

/// A connection's future `C` together with the stream futures its
/// [`InlineExecutor`] was handed; completes when `C` does.
pub(super) struct Inline<C> {
    conn: Pin<Box<C>>,
    streams: FuturesUnordered<StreamFuture>,
    shared: Arc<Shared>,
    streams_waker: Waker,
    conn_waker: Waker,
}

impl<C: Future> Inline<C> {
    /// `conn`, served by the connection builder that holds `executor`.
    pub(super) fn new(conn: C, executor: &InlineExecutor) -> Self {
        let shared = Arc::clone(&executor.shared);
        Self {
            conn: Box::pin(conn),
            streams: FuturesUnordered::new(),
            streams_waker: Waker::from(Arc::new(StreamsWake(Arc::clone(&shared)))),
            conn_waker: Waker::from(Arc::new(ConnWake(Arc::clone(&shared)))),
            shared,
        }
    }

    /// The connection (for hyper's `graceful_shutdown`).
    pub(super) fn conn(&mut self) -> Pin<&mut C> {
        self.conn.as_mut()
    }

    /// One pass: new and woken stream futures, then the connection if woken.
    fn pass(&mut self) -> Option<C::Output> {
        if self.shared.streams.0.swap(false, SeqCst) {
            let spawned = std::mem::take(
                &mut *self
                    .shared
                    .spawned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            self.streams.extend(spawned);
            let mut cx = Context::from_waker(&self.streams_waker);
            while let Poll::Ready(Some(())) = self.streams.poll_next_unpin(&mut cx) {}
        }
        if self.shared.conn.0.swap(false, SeqCst) {
            let mut cx = Context::from_waker(&self.conn_waker);
            if let Poll::Ready(out) = self.conn.as_mut().poll(&mut cx) {
                return Some(out);
            }
        }
        None
    }
}

impl<C: Future> Future for Inline<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        this.shared.in_pass.store(true, SeqCst);
        let mut done = None;
        for _ in 0..PASSES {
            done = this.pass();
            if done.is_some() || !this.shared.pending() {
                break;
            }
        }
        this.shared.in_pass.store(false, SeqCst);
        if let Some(out) = done {
            return Poll::Ready(out);
        }
        if this.shared.pending() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "inline_tests.rs"]
mod tests;
