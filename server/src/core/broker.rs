//! The Redis Streams engine (issue 14): several replicas share one chat
//! through one Redis stream.
//!
//! The design in full (publishing, group commit, delivery, what each failure
//! does, limits): `README.md` in this folder.
//!
//! - **Publishing** ([`RedisEngine::send`]): one atomic script
//!   ([`script`]) stamps `sendTime` from Redis `TIME`, counts the offset in
//!   the metadata key `<stream>:meta`, trims the stream to its bounds in
//!   entries and bytes, and `XADD`s the entry. Concurrent sends share one script call ([`commit`]: group
//!   commit, on the shared, reconnecting [`ConnectionManager`]). The entry
//!   is then handed to the local hub right away by its sender when it is the
//!   next one this replica expects ([`deliver`]), or else by this replica's
//!   reader; `send`
//!   returns only after that, so "SendMessage returns after every subscriber
//!   of this replica has the message" still holds.
//! - **Delivering** ([`reader`]): one task per replica, on its own
//!   connection, `XREAD BLOCK`s from its last entry id and hands every entry
//!   to the hub's ingest path ([`Fanout::ingest`]) in stream order; the local history is the stream's
//!   tail, loaded with `XREVRANGE` on start and on every new epoch.
//! - **Failures**: every call is bounded by `MESSENGER_BROKER_TIMEOUT_MS`;
//!   [`RedisEngine::watch_up`] drives the messenger service's health
//!   ([`HealthReporter::follow`](crate::grpc::health::HealthReporter::follow)); a
//!   lost stream (new epoch) or one trimmed past this replica ends the local
//!   streams through [`Fanout::restart`]. A Redis that refuses writes for a
//!   reason a resend cannot fix ([`refusal`]) turns health NOT_SERVING until
//!   a probe gets through; one out of memory first gets room from the
//!   stream's oldest delivered entries ([`room`]).
//! - **Rollback**: a Redis that no longer holds the newest entry this replica
//!   delivered (an older snapshot, a lagging replica promoted) gets a new
//!   epoch from whichever script this replica runs next, and the reader
//!   forces that check when it reads another entry at an offset it
//!   delivered, or after a second without entries.
//!
//! Invariants: offsets and `sendTime` come only from the script, so every
//! replica holds the same order, and no stamp is given at or before the
//! newest `sendTime` the calling replica delivered; entries reach the hub
//! (its ingest path, [`Fanout::ingest`]) only through
//! [`deliver`], under one lock, in offset order; messages and errors name the broker by its
//! URL without credentials ([`redacted`]).

mod commit;
mod connect;
mod deliver;
pub mod entry;
mod error;
mod lua;
mod reach;
mod reader;
mod refusal;
mod replicas;
mod room;
pub mod script;
mod send;
mod sentinel;
pub mod sentinel_url;
mod start;

pub use connect::redacted;
pub use error::{BrokerConfigError, BrokerError, Failure};
pub use refusal::Refusal;

use crate::core::fanout::Fanout;
use crate::core::history::memory::Bounds;
use crate::ops::metrics::BrokerMetrics;
use deliver::Delivered;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;

/// The stream keeps at least this many entries whatever the history bound,
/// so trimming never removes an entry before a replica's reader, a few
/// milliseconds behind, has read it.
pub const STREAM_MIN_LEN: usize = 1_000;

/// What the broker needs from the configuration; the app builds it.
#[derive(Debug, Clone)]
pub(crate) struct BrokerSettings {
    /// `redis://`, `rediss://`, `redis+sentinel://` or `rediss+sentinel://`
    /// URL (validated by the config parser).
    pub(crate) url: String,
    pub(crate) stream: String,
    /// TLS files, `rediss://` only ([`connect::client`]): the CA bundle, the
    /// client certificate and its key.
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    /// Bounds every call and connection attempt, and one send.
    pub(crate) timeout: Duration,
    /// The local history: the tail loaded on a new epoch. Its message bound
    /// also bounds the stream's entries (at least [`STREAM_MIN_LEN`]).
    pub(crate) history: Bounds,
    /// The stream's byte bound (`MESSENGER_BROKER_STREAM_BYTES`).
    pub(crate) stream_bytes: usize,
    /// Replicas that must hold a batch before it is acknowledged
    /// (`MESSENGER_BROKER_MIN_REPLICAS`, [`replicas`]).
    pub(crate) min_replicas: u64,
}

/// Where this replica's reader stands: the newest offset handed to the hub
/// in `epoch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// An owned [`script::Seen`].
#[derive(Debug, Clone, Default)]
struct Seen {
    epoch: Option<Arc<str>>,
    offset: u64,
    id: String,
    send_time: i128,
}

impl Seen {
    fn get(&self) -> script::Seen<'_> {
        script::Seen {
            epoch: self.epoch.as_deref().unwrap_or_default(),
            offset: self.offset,
            id: &self.id,
            send_time: self.send_time,
        }
    }
}

/// One replica's handle on the shared stream.
pub struct RedisEngine {
    name: Arc<str>,
    /// The node in use: the URL's, or the primary Sentinel named last
    /// ([`sentinel`]).
    client: parking_lot::Mutex<redis::Client>,
    /// With a Sentinel URL: the Sentinels to ask, the primary in use
    /// (`None` until found), a generation bumped on each change (ends the
    /// reader's session), and a nudge to ask again (`READONLY`).
    follower: Option<sentinel::Follower>,
    primary: parking_lot::Mutex<Option<(String, u16)>>,
    moved: watch::Sender<u64>,
    resolve: Arc<tokio::sync::Notify>,
    /// Replaced after a refusal ([`refusal`]): the manager redials only
    /// after I/O errors, so a connection whose login was refused (a password
    /// changed, an ACL user disabled) would fail the same way forever.
    publisher: parking_lot::Mutex<ConnectionManager>,
    manager: ConnectionManagerConfig,
    stream: String,
    meta: String,
    /// The key the reader writes before its `WAIT` ([`replicas`]).
    read_mark: String,
    /// The stream's bounds (`max(MESSENGER_HISTORY_SIZE, STREAM_MIN_LEN)`
    /// entries, `MESSENGER_BROKER_STREAM_BYTES`).
    bounds: script::Bounds,
    /// The byte bound learned from a Redis out of memory ([`room`]): the
    /// stream's size after the room it gave; `usize::MAX` until then.
    room: AtomicUsize,
    /// `MESSENGER_BROKER_MIN_REPLICAS`: replicas that must hold a batch
    /// before it is acknowledged ([`replicas`]).
    min_replicas: u64,
    /// Entries loaded into local history on a new epoch, and the byte budget
    /// (`MESSENGER_HISTORY_SIZE`, `MESSENGER_HISTORY_BYTES`).
    tail: usize,
    tail_bytes: usize,
    timeout: Duration,
    /// Where this replica stands; guards every hand-over to the hub.
    delivered: parking_lot::Mutex<Delivered>,
    /// The hub's ingest path entries go to, once started.
    local: OnceLock<Arc<Fanout>>,
    position: watch::Sender<Position>,
    /// Reachable and accepting writes: health and `messenger_broker_up`.
    up: watch::Sender<bool>,
    /// Whether the reader is connected and reading ([`reach`]).
    reachable: AtomicBool,
    /// Whether reachability was reported (logged) yet.
    reported: AtomicBool,
    /// Why the broker refuses this replica's writes, while it does.
    refused: parking_lot::Mutex<Option<Refusal>>,
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
    /// A handle for `settings.url` with its TLS files ([`connect::client`]),
    /// or the Sentinels of a Sentinel URL ([`sentinel`]); connects lazily,
    /// so a broker that is down at start is not an error.
    pub(crate) fn new(settings: BrokerSettings) -> Result<Arc<Self>, BrokerConfigError> {
        let (client, follower) = match sentinel_url::SentinelUrl::is_sentinel(&settings.url) {
            // Never dialled: every use of the broker asks the Sentinels
            // first while no primary is known ([`Self::follow`]).
            true => (
                redis::Client::open("redis://127.0.0.1:0").map_err(BrokerConfigError::Url)?,
                Some(sentinel::Follower::new(&settings)?),
            ),
            false => (connect::client(&settings)?, None),
        };
        let timeout = settings.timeout;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())
            .map_err(BrokerConfigError::Url)?;
        let (queue, queued) = mpsc::unbounded_channel();
        let metrics = BrokerMetrics::new();
        metrics.refusal_reasons(Refusal::ALL.map(Refusal::label));
        Ok(Arc::new(Self {
            name: redacted(&settings.url).into(),
            client: parking_lot::Mutex::new(client),
            follower,
            primary: parking_lot::Mutex::new(None),
            moved: watch::Sender::new(0),
            resolve: Arc::default(),
            publisher: parking_lot::Mutex::new(publisher),
            manager,
            meta: format!("{}:meta", settings.stream),
            read_mark: format!("{}:{}", settings.stream, replicas::READ_MARK_SUFFIX),
            stream: settings.stream,
            bounds: script::Bounds {
                entries: settings.history.messages.max(STREAM_MIN_LEN),
                bytes: settings.stream_bytes,
            },
            room: AtomicUsize::new(usize::MAX),
            min_replicas: settings.min_replicas,
            tail: settings.history.messages,
            tail_bytes: settings.history.bytes,
            timeout,
            delivered: parking_lot::Mutex::new(Delivered::default()),
            local: OnceLock::new(),
            position: watch::Sender::new(Position::default()),
            up: watch::Sender::new(false),
            reachable: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            refused: parking_lot::Mutex::new(None),
            metrics,
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

    /// `true` once the reader has loaded the stream (its epoch and tail).
    pub fn is_loaded(&self) -> bool {
        self.delivered.lock().epoch.is_some()
    }

    /// What this replica delivered: what the scripts check the metadata
    /// against, so a Redis rolled back behind it gets a new epoch and stamps
    /// after it.
    fn seen(&self) -> Seen {
        let delivered = self.delivered.lock();
        Seen {
            epoch: delivered.epoch.clone(),
            offset: delivered.newest,
            id: delivered.newest_id().to_owned(),
            send_time: delivered.newest_time,
        }
    }

    /// The client for the node in use.
    fn client(&self) -> redis::Client {
        self.client.lock().clone()
    }

    /// The publishing connection (a cheap handle on the shared one).
    fn publisher(&self) -> ConnectionManager {
        self.publisher.lock().clone()
    }

    /// The stream's bounds, with the byte bound learned from a Redis out of
    /// memory.
    fn bounds(&self) -> script::Bounds {
        let room = self.room.load(Ordering::Relaxed);
        script::Bounds {
            bytes: self.bounds.bytes.min(room),
            ..self.bounds
        }
    }
}
