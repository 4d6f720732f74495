//! The Redis Streams engine (issue 14): several replicas share one chat
//! through one Redis stream.
//!
//! The design in full (publishing, group commit, delivery, what each failure
//! does, limits): `README.md` in this folder.
//!
//! - **Publishing** ([`RedisEngine::send`]): one atomic script
//!   ([`script`]) stamps `sendTime` from Redis `TIME`, counts the offset in
//!   the metadata key `<stream>:meta`, `XADD`s the entry and trims the stream
//!   (`MAXLEN ~`). Concurrent sends share one script call ([`commit`]: group
//!   commit, on the shared, reconnecting [`ConnectionManager`]). The entry
//!   is then handed to the local hub right away by its sender when it is the
//!   next one this replica expects ([`deliver`]), or else by this replica's
//!   reader; `send`
//!   returns only after that, so "SendMessage returns after every subscriber
//!   of this replica has the message" still holds.
//! - **Delivering** ([`reader`]): one task per replica, on its own
//!   connection, `XREAD BLOCK`s from its last entry id and hands every entry
//!   to [`Hub::ingest`] in stream order; the local history is the stream's
//!   tail, loaded with `XREVRANGE` on start and on every new epoch.
//! - **Failures**: every call is bounded by `MESSENGER_BROKER_TIMEOUT_MS`;
//!   [`RedisEngine::watch_up`] drives the messenger service's health
//!   ([`HealthReporter::follow`](crate::grpc::health::HealthReporter::follow)); a
//!   lost stream (new epoch) or one trimmed past this replica ends the local
//!   streams through [`Hub::restart`].
//!
//! Invariants: offsets and `sendTime` come only from the script, so every
//! replica holds the same order; entries reach `Hub::ingest` only through
//! [`deliver`], under one lock, in offset order; messages and errors name the broker by its
//! URL without credentials ([`redacted`]).

mod commit;
mod connect;
mod deliver;
pub mod entry;
mod error;
mod reach;
mod reader;
pub mod script;

pub use connect::redacted;
pub use error::{BrokerConfigError, BrokerError, Failure};

use crate::app::config::{Config, ENV_BROKER_URL};
use crate::core::hub::Hub;
use crate::ops::metrics::{BrokerMetrics, Metrics};
use deliver::{Delivered, Local};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use script::Stamp;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout_at;

/// The stream keeps at least this many entries whatever the history bound,
/// so trimming never removes an entry before a replica's reader, a few
/// milliseconds behind, has read it.
pub const STREAM_MIN_LEN: usize = 1_000;

/// Where this replica's reader stands: the newest offset handed to the hub
/// in `epoch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// One replica's handle on the shared stream.
pub struct RedisEngine {
    name: Arc<str>,
    client: redis::Client,
    publisher: ConnectionManager,
    stream: String,
    meta: String,
    /// `MAXLEN ~` of every `XADD`.
    max_len: usize,
    /// Entries loaded into local history on a new epoch, and the byte budget
    /// (`MESSENGER_HISTORY_SIZE`, `MESSENGER_HISTORY_BYTES`).
    tail: usize,
    tail_bytes: usize,
    timeout: Duration,
    /// `MESSENGER_TRACE_DELIVER_SPANS_MAX`, for each replica's `fanout`.
    deliver_spans_max: usize,
    /// Where this replica stands; guards every hand-over to the hub.
    delivered: parking_lot::Mutex<Delivered>,
    /// The hub and metrics entries go to, once started.
    local: OnceLock<Local>,
    position: watch::Sender<Position>,
    up: watch::Sender<bool>,
    /// Whether `up` was reported (logged) yet.
    reported: AtomicBool,
    metrics: BrokerMetrics,
    /// Sends waiting for their publish script call ([`commit`]), and the
    /// receiving end until `start` hands it to the committing task.
    queue: commit::Queue,
    queued: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<commit::Pending>>>,
    /// The publishing thread's runtime ([`commit::start`]), where every use
    /// of `publisher` runs.
    publishing: OnceLock<tokio::runtime::Handle>,
}

impl RedisEngine {
    /// A handle for `config.broker_url` (validated by the config parser),
    /// with its TLS files ([`connect::client`]); connects lazily, so a broker
    /// that is down at start is not an error.
    pub fn new(config: &Config) -> Result<Arc<Self>, BrokerConfigError> {
        let url = config.broker_url.as_deref().unwrap_or_default();
        let client = connect::client(config)?;
        let timeout = config.broker_timeout();
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(BrokerConfigError::Url)?;
        let (queue, queued) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            name: redacted(url).into(),
            client,
            publisher,
            stream: config.broker_stream.clone(),
            meta: format!("{}:meta", config.broker_stream),
            max_len: config.history_size.max(STREAM_MIN_LEN),
            tail: config.history_size,
            tail_bytes: config.history_bytes,
            timeout,
            deliver_spans_max: config.trace_deliver_spans_max,
            delivered: parking_lot::Mutex::new(Delivered::default()),
            local: OnceLock::new(),
            position: watch::Sender::new(Position::default()),
            up: watch::Sender::new(false),
            reported: AtomicBool::new(false),
            metrics: BrokerMetrics::new(),
            queue,
            queued: parking_lot::Mutex::new(Some(queued)),
            publishing: OnceLock::new(),
        }))
    }

    /// The broker's URL without credentials.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// `true` while the reader is connected and reading.
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// This replica's reader position.
    pub fn watch_position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// Publishes one message and returns once it is queued to every local
    /// subscriber, all within the broker timeout. Concurrent sends share
    /// script calls ([`commit`]); the first sender of a batch to run hands
    /// its entries to the local hub when they are the next ones this replica
    /// expects (saving the reader's `XREAD` round trip), else the reader
    /// does. Returns the
    /// broker's stamp (epoch, offset, `sendTime`, entry id). A send before
    /// [`start`](Self::start) waits for it, within the same timeout.
    pub async fn send(
        &self,
        author: &str,
        text: &str,
        traceparent: Option<&str>,
    ) -> Result<Stamp, BrokerError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let (reply, answer) = oneshot::channel();
        let claim = Arc::new(commit::Claim::default());
        let pending = commit::Pending {
            author: author.to_owned(),
            text: text.to_owned(),
            traceparent: traceparent.map(str::to_owned),
            queued: started,
            claim: Arc::clone(&claim),
            reply,
        };
        if self.queue.send(pending).is_err() {
            return Err(self.publish_failed(Failure::Stopped));
        }
        let committed = match timeout_at(deadline, answer).await {
            Ok(Ok(Ok(committed))) => committed,
            Ok(Ok(Err(failure))) => return Err(self.publish_failed(failure)),
            Ok(Err(_)) => return Err(self.publish_failed(Failure::Stopped)),
            Err(_) if claim.abandon() => {
                return Err(self.publish_failed(Failure::Queued(self.timeout)));
            }
            Err(_) => return Err(self.publish_failed(Failure::Timeout(self.timeout))),
        };
        let stamp = committed.stamp;
        if committed.staged && self.deliver_staged(&stamp) {
            return Ok(stamp);
        }
        let mut position = self.position.subscribe();
        // Delivered, or this replica moved on to another epoch than the
        // stamp's (the broker lost its history again), where this offset
        // will never come. A replica still behind, in the epoch before the
        // stamp's, is not that: it is about to load the stamp's epoch.
        let behind = position.borrow().epoch.clone();
        let settled = |p: &Position| {
            let other = *p.epoch != *stamp.epoch;
            (other && *p.epoch != *behind) || (!other && p.offset >= stamp.offset)
        };
        match timeout_at(deadline, position.wait_for(settled)).await {
            Ok(Ok(p)) if *p.epoch == *stamp.epoch => Ok(stamp),
            Ok(Ok(_)) => Err(self.publish_failed(Failure::Lost {
                offset: stamp.offset,
            })),
            _ => Err(self.publish_failed(Failure::NotDelivered {
                offset: stamp.offset,
                timeout: self.timeout,
            })),
        }
    }

    /// Delivers what its batch staged, if it is next; `true` once `stamp`'s
    /// entry reached the hub. A hub shutting down counts as reached: the
    /// entry is in the stream, and the local streams are ending anyway.
    fn deliver_staged(&self, stamp: &Stamp) -> bool {
        let Some(local) = self.local.get() else {
            return false;
        };
        let mut delivered = self.delivered.lock();
        let local = (&*local.hub, &*local.metrics);
        delivered.deliver_staged(self, local).is_err() || delivered.has(&stamp.epoch, stamp.offset)
    }

    /// `true` once the reader has loaded the stream (its epoch and tail).
    pub fn is_loaded(&self) -> bool {
        self.delivered.lock().epoch.is_some()
    }

    /// This replica's epoch (`None` before its first load) and the newest
    /// offset it delivered: what the scripts check the metadata against, so
    /// a Redis rolled back behind it gets a new epoch.
    fn seen(&self) -> (Option<Arc<str>>, u64) {
        let delivered = self.delivered.lock();
        (delivered.epoch.clone(), delivered.newest)
    }

    /// Starts this replica's reader and waits (up to the broker timeout) for
    /// its first load of the stream's tail, so a restarted replica serves
    /// resumes from its first request. A broker that is down is logged and
    /// left to the reader's retries.
    pub async fn start(
        self: &Arc<Self>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let mut up = self.watch_up();
        let local = Local {
            hub: Arc::clone(&hub),
            metrics: Arc::clone(&metrics),
        };
        if self.local.set(local).is_err() {
            tracing::warn!(broker = %self.name, "broker engine started twice; keeping the first hub");
        }
        if let Some(queued) = self.queued.lock().take()
            && let Some(runtime) = commit::start(Arc::downgrade(self), queued)
        {
            let _ = self.publishing.set(runtime);
        }
        let task = tokio::spawn(reader::run(Arc::clone(self), hub, metrics));
        if tokio::time::timeout(self.timeout, up.wait_for(|up| *up))
            .await
            .is_err()
        {
            tracing::warn!(
                broker = %self.name,
                env = ENV_BROKER_URL,
                "broker not reachable at start; serving with health NOT_SERVING until it is"
            );
        }
        task
    }
}
