//! Group commit: concurrent sends on this replica share publish script
//! calls, so at high load one round trip and one script run carry many
//! messages instead of one each.
//!
//! [`RedisEngine::send`] queues a [`Pending`] message and waits for its
//! answer. One task per replica ([`run`]) takes everything queued since its
//! last call (up to [`script::BATCH_MAX`] messages) and publishes it with one
//! [`script::publish_batch`], keeping up to [`DEPTH`] calls in flight on the
//! shared multiplexed connection. A lone send is taken at once, so at low
//! load this adds no wait; batches form only while calls are in flight,
//! which is exactly when sends would otherwise queue inside Redis.
//!
//! The task runs on its own thread with a current-thread runtime, with the
//! publishing connection's I/O: a script reply is then read as soon as it
//! arrives, instead of waiting in the server's run queue behind every
//! subscriber task the previous message woke (measured at 16 concurrent
//! sends: a mean round trip of 0.87 ms for a script Redis ran in 0.02 ms).
//!
//! Invariants:
//! - Redis runs one connection's commands in the order they were written,
//!   and replies come back in that order, which is the order batches were
//!   taken (`FuturesOrdered`). So a batch's messages get consecutive offsets
//!   in queue order, and batches are answered in offset order.
//! - Each answered batch is staged ([`Delivered`], under the engine's lock)
//!   before any sender is answered; the first sender to run delivers it, and
//!   each returns only once its own entry reached the hub, so "SendMessage
//!   returns after every local subscriber has the message" holds for all.
//! - A message whose sender gave up (its call was cancelled) before its
//!   batch was taken is not published; every taken message gets exactly one
//!   answer.
//!
//! [`RedisEngine::send`]: super::RedisEngine::send
//! [`Delivered`]: super::deliver::Delivered

use super::entry::Entry;
use super::script::{self, Fields, Stamp};
use super::{Failure, RedisEngine, Refusal};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most publish script calls in flight at once on this replica. One more
/// call would only queue behind the others inside Redis; its messages
/// wait here instead and go out together in the next batch.
pub(super) const DEPTH: usize = 2;

/// A publishing connection idle this long is checked with a `PING` before a
/// script goes out on it: Redis's idle `timeout`, `CLIENT KILL` or a NAT
/// reset may have closed it, and a script written to a closed connection
/// fails "broken pipe" with an outcome the sender cannot know.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How much sooner than its senders' deadlines a batch gives up, so they
/// get its precise answer rather than their own timer's (at most 20 ms, and
/// a tenth of the timeout below 200 ms).
fn margin(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(20))
}

/// A message waiting for its publish script call.
pub(super) struct Pending {
    pub(super) author: String,
    pub(super) text: String,
    pub(super) traceparent: Option<String>,
    /// When `send` queued it: `messenger_broker_publish_seconds` runs from
    /// here to the script's answer, and its sender waits from here for
    /// `MESSENGER_BROKER_TIMEOUT_MS`.
    pub(super) queued: Instant,
    /// Who decided its fate first: this task taking it into a batch, or
    /// its sender giving up on it while still queued ([`Claim`]).
    pub(super) claim: Arc<Claim>,
    pub(super) reply: oneshot::Sender<Result<Committed, Failure>>,
}

/// A queued message is taken into a batch or abandoned by its sender,
/// never both: so a sender that gave up before its message was taken can
/// say surely that it was not sent.
#[derive(Debug, Default)]
pub(super) struct Claim(AtomicU8);

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl Claim {
    /// `true` if the message is now this task's to publish.
    fn take(&self) -> bool {
        (self
            .0
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire))
        .is_ok()
    }

    /// `true` if the sender gave the message up before it was taken (it will
    /// not be published); `false` if it was taken already.
    pub(super) fn abandon(&self) -> bool {
        (self
            .0
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire))
        .is_ok()
    }
}

/// A published message: its stamp, and whether it was staged for its
/// senders to deliver (else the reader will, and the sender waits for that).
#[derive(Debug)]
pub(super) struct Committed {
    pub(super) stamp: Stamp,
    pub(super) staged: bool,
}

pub(super) type Queue = mpsc::UnboundedSender<Pending>;

/// Starts the committing task on its own thread and returns that thread's
/// runtime, for every other use of the publishing connection. If the thread
/// cannot be made, the task runs on the caller's runtime instead (`None`).
pub(super) fn start(
    broker: Weak<RedisEngine>,
    queue: mpsc::UnboundedReceiver<Pending>,
) -> Option<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, "no runtime for the broker publishing thread; publishing on the server's");
            tokio::spawn(run(broker, queue));
            return None;
        }
    };
    let handle = runtime.handle().clone();
    // Taken back if the thread cannot start.
    let queue = Arc::new(parking_lot::Mutex::new(Some(queue)));
    let thread = std::thread::Builder::new()
        .name("broker-publish".into())
        .spawn({
            let (broker, queue) = (broker.clone(), Arc::clone(&queue));
            move || {
                if let Some(queue) = queue.lock().take() {
                    runtime.block_on(run(broker, queue));
                }
            }
        });
    match thread {
        Ok(_) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "no broker publishing thread; publishing on the server's runtime");
            if let Some(queue) = queue.lock().take() {
                tokio::spawn(run(broker, queue));
            }
            None
        }
    }
}

/// Publishes what `queue` brings until the engine is dropped.
async fn run(broker: Weak<RedisEngine>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut in_flight = FuturesOrdered::new();
    let mut taken = Vec::with_capacity(script::BATCH_MAX);
    let mut last_used = Instant::now();
    loop {
        tokio::select! {
            biased;
            Some((batch, result)) = in_flight.next(), if !in_flight.is_empty() => {
                last_used = Instant::now();
                answer(&broker, batch, result);
            }
            n = queue.recv_many(&mut taken, script::BATCH_MAX), if in_flight.len() < DEPTH => {
                if n == 0 {
                    break;
                }
                let batch: Vec<Pending> = (taken.drain(..))
                    .filter(|p| !p.reply.is_closed() && p.claim.take())
                    .collect();
                if !batch.is_empty() {
                    let idle = last_used.elapsed() >= IDLE_CHECK;
                    last_used = Instant::now();
                    in_flight.push_back(publish(broker.clone(), batch, idle));
                }
            }
        }
    }
    while let Some((batch, result)) = in_flight.next().await {
        answer(&broker, batch, result);
    }
}

/// One script call for `batch`, given up a [`margin`] before the first of
/// its senders' deadlines; a refused connection (nothing was sent; the
/// manager reconnects now) is tried once more. A broker marked down, or a
/// connection `idle` for [`IDLE_CHECK`], is `PING`ed first: that replaces a
/// dead connection, or tells surely that nothing was sent.
async fn publish(
    broker: Weak<RedisEngine>,
    batch: Vec<Pending>,
    idle: bool,
) -> (Vec<Pending>, Result<Vec<Stamp>, Failure>) {
    let Some(broker) = broker.upgrade() else {
        return (batch, Err(Failure::Stopped));
    };
    let broker = &*broker;
    // Its senders stop waiting `MESSENGER_BROKER_TIMEOUT_MS` after queueing.
    let first = batch
        .iter()
        .map(|p| p.queued)
        .min()
        .unwrap_or_else(Instant::now);
    let deadline = tokio::time::Instant::from_std(first + broker.timeout - margin(broker.timeout));
    if deadline <= tokio::time::Instant::now() {
        let queued = Failure::Queued(broker.timeout);
        return (batch, Err(queued));
    }
    // Queued before a Sentinel failover started: not sent either.
    if let Some(failure) = broker.failing_over() {
        return (batch, Err(failure));
    }
    if !broker.is_up() || idle {
        // With Sentinel, the primary may have moved while the broker was down.
        if !broker.is_up() {
            let asked = tokio::time::timeout_at(deadline, broker.follow()).await;
            if let Err(failure) = asked.unwrap_or(Err(Failure::Timeout(broker.timeout))) {
                return (batch, Err(broker.batch_failed(failure)));
            }
        }
        let ping = tokio::time::timeout_at(deadline, broker.ping_publisher()).await;
        let failed = match ping {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        };
        if let Some(e) = failed {
            return (batch, Err(broker.batch_failed(Failure::Unreachable(e))));
        }
    }
    let result = {
        let fields: Vec<Fields<'_>> = (batch.iter())
            .map(|p| (&*p.author, &*p.text, p.traceparent.as_deref()))
            .collect();
        let seen = broker.seen();
        let keys = (&*broker.stream, &*broker.meta);
        let once = || {
            let mut conn = broker.publisher();
            let (fields, seen, bounds) = (&fields, seen.get(), broker.bounds());
            async move { script::publish_batch(&mut conn, keys, bounds, fields, seen).await }
        };
        let call = async {
            match once().await {
                Err(e) if e.is_connection_refusal() => once().await,
                // Nothing was appended; the retry goes out once room was made.
                Err(e) if Refusal::of(&e) == Some(Refusal::OutOfMemory) => {
                    if broker.make_room(&mut broker.publisher()).await {
                        once().await
                    } else {
                        Err(e)
                    }
                }
                result => result,
            }
        };
        let durable = async {
            let stamps = call.await?;
            let offset = stamps.last().map_or(0, |s| s.offset);
            // The publishing connection, which just ran the script.
            let mut conn = broker.publisher();
            broker.wait_replicas(&mut conn, offset, deadline).await?;
            Ok::<_, Failure>(stamps)
        };
        match tokio::time::timeout_at(deadline, durable).await {
            Ok(Ok(stamps)) => {
                if broker.refusal().is_some() {
                    broker.set_refused(None);
                }
                Ok(stamps)
            }
            Ok(Err(e)) => Err(broker.batch_failed(e)),
            Err(_) => Err(broker.batch_failed(Failure::Timeout(broker.timeout))),
        }
    };
    (batch, result)
}

/// Stages a published batch for its senders to deliver, then answers each
/// sender; a failure answers each with it. The hub work is left to the
/// senders: they run on the server's worker threads, where waking the
/// subscriber tasks is local, while this thread would wake each remotely.
fn answer(broker: &Weak<RedisEngine>, batch: Vec<Pending>, result: Result<Vec<Stamp>, Failure>) {
    let (stamps, broker) = match (result, broker.upgrade()) {
        (Ok(stamps), Some(broker)) => (stamps, broker),
        (result, _) => {
            let failure = result.err().unwrap_or(Failure::Stopped);
            for pending in batch {
                let _ = pending.reply.send(Err(failure.clone()));
            }
            return;
        }
    };
    (broker.metrics.publish_batch).record(batch.len() as f64);
    for pending in &batch {
        (broker.metrics.publish).record(pending.queued.elapsed().as_secs_f64());
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut delivered = broker.delivered.lock();
    let local = broker.local.get().is_some();
    for (pending, stamp) in batch.into_iter().zip(stamps) {
        let entry = Entry {
            epoch: stamp.epoch.to_string(),
            offset: stamp.offset,
            send_time: stamp.send_time,
            author: pending.author,
            text: pending.text,
            traceparent: pending.traceparent,
        };
        let staged = local && delivered.stage(entry, stamp.id.clone());
        replies.push((pending.reply, Committed { stamp, staged }));
    }
    drop(delivered);
    for (reply, committed) in replies {
        let _ = reply.send(Ok(committed));
    }
}
