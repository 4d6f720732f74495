//! The span processor between finished spans and the OTLP exporter: a
//! bounded queue under one lock, drained in batches by its own thread.
//!
//! It replaces the SDK's `BatchSpanProcessor` (issue 28), which moves every
//! span through a `sync_channel`: a send on the task that ends it, then a
//! receive and a push on its thread, and a new `Vec` per export. Here ending
//! a span is one push under a mutex, and the thread swaps the whole queue
//! for its spare buffer, exports it in place and keeps both buffers.
//!
//! The SDK's semantics, kept:
//! - the queue holds at most `max_queue` spans; a span that finds it full is
//!   dropped and counted, the first drop is warned about and the total is
//!   logged at shutdown;
//! - an export starts when `max_batch` spans wait, or `delay` after the
//!   previous one, whichever comes first, and carries at most `max_batch`
//!   spans (a longer queue goes out in several exports, in order);
//! - [`Batcher::force_flush`] returns once everything queued before it is
//!   exported; [`Batcher::shutdown`] does the same, then stops the thread
//!   (both bounded by a timeout); a span ended after shutdown is dropped.

use super::finished::Finished;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long [`Batcher::force_flush`] waits for its export (the SDK's bound).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where batches go: the OTLP exporter, or a test's collector.
pub(super) trait Export: Send + 'static {
    /// Sends `spans` (at most one batch), blocking until done or failed.
    fn export(&mut self, spans: &[Finished]) -> OTelSdkResult;
}

/// The queue's bound, the batch size and the delay between exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) max_queue: usize,
    pub(super) max_batch: usize,
    pub(super) delay: Duration,
}

#[derive(Debug)]
pub(super) struct Batcher {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the thread: a full batch, a flush, shutdown.
    work: Condvar,
    /// Wakes flush and shutdown callers when a round of exports is done.
    done: Condvar,
    limits: Limits,
    dropped: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<Finished>,
    /// Flushes asked for, and the last one whose spans are all exported.
    flush_asked: u64,
    flush_done: u64,
    /// The last round's failure, reported to the flush it served.
    failure: Option<String>,
    shutdown: bool,
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Batcher {
    /// Starts the export thread; `limits.max_batch` is at least 1 and at
    /// most `limits.max_queue` (the caller clamps it).
    pub(super) fn start(exporter: impl Export, limits: Limits) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            limits,
            dropped: AtomicUsize::new(0),
        });
        let worker = thread::Builder::new()
            .name("otel-batch".to_owned())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, exporter)
            })?;
        Ok(Self {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Queues a finished span (or drops it: queue full, or shut down).
    pub(super) fn push(&self, span: Finished) {
        let limits = &self.shared.limits;
        let mut state = self.shared.lock();
        if state.shutdown {
            return;
        }
        if state.queue.len() >= limits.max_queue {
            drop(state);
            if self.shared.dropped.fetch_add(1, Relaxed) == 0 {
                tracing::warn!(
                    max_queue_size = limits.max_queue,
                    "span queue full: dropping spans (the total is logged at shutdown)"
                );
            }
            return;
        }
        state.queue.push(span);
        if state.queue.len() == limits.max_batch {
            self.shared.work.notify_one();
        }
    }

    /// Spans dropped because the queue was full.
    pub(super) fn dropped(&self) -> usize {
        self.shared.dropped.load(Relaxed)
    }

    /// Exports everything queued so far; returns when done.
    pub(super) fn force_flush(&self) -> OTelSdkResult {
        let mut state = self.shared.lock();
        if state.stopped {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.flush_asked += 1;
        let ticket = state.flush_asked;
        self.shared.work.notify_one();
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while state.flush_done < ticket && !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(FLUSH_TIMEOUT));
            }
            state = wait(&self.shared.done, state, left);
        }
        match state.failure.clone() {
            Some(failure) => Err(OTelSdkError::InternalFailure(failure)),
            None => Ok(()),
        }
    }

    /// Exports everything queued, then stops the thread.
    pub(super) fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "spans were dropped because the span queue was full"
            );
        }
        let mut state = self.shared.lock();
        if state.shutdown {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.shutdown = true;
        self.shared.work.notify_one();
        let deadline = Instant::now() + timeout;
        while !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(timeout));
            }
            state = wait(&self.shared.done, state, left);
        }
        let failure = state.failure.clone();
        drop(state);
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(worker) = worker {
            let _ = worker.join();
        }
        failure.map_or(Ok(()), |f| Err(OTelSdkError::InternalFailure(f)))
    }
}

fn wait<'a>(cv: &Condvar, state: MutexGuard<'a, State>, left: Duration) -> MutexGuard<'a, State> {
    cv.wait_timeout(state, left)
        .unwrap_or_else(PoisonError::into_inner)
        .0
}

/// The export thread: waits for a full batch, a flush, shutdown or the
/// delay, then exports the whole queue in batches, in order.
fn run(shared: &Shared, mut exporter: impl Export) {
    let Limits {
        max_batch, delay, ..
    } = shared.limits;
    let mut spare: Vec<Finished> = Vec::new();
    let mut last_export = Instant::now();
    let mut state = shared.lock();
    loop {
        loop {
            let due = last_export + delay;
            let now = Instant::now();
            let flush = state.flush_asked > state.flush_done;
            if state.shutdown || flush || state.queue.len() >= max_batch || now >= due {
                break;
            }
            state = wait(&shared.work, state, due - now);
        }
        let (flush, shutdown) = (state.flush_asked, state.shutdown);
        std::mem::swap(&mut state.queue, &mut spare);
        drop(state);
        let mut failure = None;
        for batch in spare.chunks(max_batch) {
            if let Err(error) = exporter.export(batch) {
                tracing::warn!(%error, spans = batch.len(), "trace export failed");
                failure = Some(error.to_string());
            }
        }
        spare.clear();
        last_export = Instant::now();
        state = shared.lock();
        state.flush_done = flush;
        state.failure = failure;
        if shutdown {
            state.stopped = true;
            shared.done.notify_all();
            return;
        }
        shared.done.notify_all();
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
