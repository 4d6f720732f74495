//! The Redis Streams engine (issue 14): several replicas share one chat
//! through one Redis stream.
//!
//! - **Publishing** ([`RedisEngine::send`]): one atomic script
//!   ([`script`]) stamps `sendTime` from Redis `TIME`, counts the offset in
//!   the metadata key `<stream>:meta`, `XADD`s the entry and trims the stream
//!   (`MAXLEN ~`). It runs on the shared, reconnecting [`ConnectionManager`].
//!   `send` then waits until this replica's reader has handed that offset to
//!   the local hub, so "SendMessage returns after every subscriber of this
//!   replica has the message" still holds.
//! - **Delivering** ([`reader`]): one task per replica, on its own
//!   connection, `XREAD BLOCK`s from its last entry id and hands every entry
//!   to [`Hub::ingest`] in stream order; the local history is the stream's
//!   tail, loaded with `XREVRANGE` on start and on every new epoch.
//! - **Failures**: every call is bounded by `MESSENGER_BROKER_TIMEOUT_MS`;
//!   [`RedisEngine::watch_up`] drives the messenger service's health; a
//!   lost stream (new epoch) or one trimmed past this replica ends the local
//!   streams through [`Hub::restart`].
//!
//! Invariants: offsets and `sendTime` come only from the script, so every
//! replica holds the same order; the reader is the only caller of
//! `Hub::ingest`/`Hub::restart`; messages and errors name the broker by its
//! URL without credentials ([`redacted`]).

pub mod entry;
mod error;
pub mod reader;
pub mod script;

pub use error::{BrokerConfigError, BrokerError, Failure};

use crate::config::{Config, ENV_BROKER_URL};
use crate::health::HealthReporter;
use crate::hub::Hub;
use crate::metrics::{BrokerMetrics, BrokerOp, Metrics};
use messenger_proto::SERVICE_NAME;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use script::Stamp;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::time::timeout_at;
use tonic_health::ServingStatus;

/// The stream keeps at least this many entries whatever the history bound,
/// so trimming never removes an entry before a replica's reader, a few
/// milliseconds behind, has read it.
pub const STREAM_MIN_LEN: usize = 1_000;

/// `scheme://host:port/db` of `url` without user or password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<broker>".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    format!("{scheme}://{rest}")
}

/// The client for `url`, trusting the PEM CA bundle at `ca` when given (a
/// `rediss://` URL only: a CA for a plaintext broker is a mistake).
fn client(url: &str, ca: Option<&Path>) -> Result<redis::Client, BrokerConfigError> {
    let Some(path) = ca else {
        return redis::Client::open(url).map_err(BrokerConfigError::Url);
    };
    let bad = |why: String| BrokerConfigError::Ca {
        path: path.to_owned(),
        why,
    };
    if !url.starts_with("rediss://") {
        return Err(bad(format!("a CA needs a rediss:// {ENV_BROKER_URL}")));
    }
    messenger_runtime::tls::read_certificate_ders(crate::config::ENV_BROKER_CA, path)?;
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    redis::Client::build_with_tls(url, certs)
        .map_err(|e| bad(format!("not a usable PEM CA bundle ({e})")))
}

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
    position: watch::Sender<Position>,
    up: watch::Sender<bool>,
    metrics: BrokerMetrics,
}

impl RedisEngine {
    /// A handle for `config.broker_url` (validated by the config parser),
    /// trusting `config.broker_ca` when set; connects lazily, so a broker
    /// that is down at start is not an error.
    pub fn new(config: &Config) -> Result<Arc<Self>, BrokerConfigError> {
        let url = config.broker_url.as_deref().unwrap_or_default();
        let client = client(url, config.broker_ca.as_deref())?;
        let timeout = config.broker_timeout();
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(BrokerConfigError::Url)?;
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
            position: watch::Sender::new(Position::default()),
            up: watch::Sender::new(false),
            metrics: BrokerMetrics::new(),
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

    /// Publishes one message and waits until this replica's reader has
    /// handed it to every local subscriber; all within the broker timeout.
    /// Returns the broker's stamp (epoch, offset, `sendTime`).
    pub async fn send(
        &self,
        author: &str,
        text: &str,
        traceparent: Option<&str>,
    ) -> Result<Stamp, BrokerError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let call = async {
            let publish = || {
                let mut conn = self.publisher.clone();
                async move {
                    let (keys, fields) =
                        ((&*self.stream, &*self.meta), (author, text, traceparent));
                    script::publish(&mut conn, keys, self.max_len, fields).await
                }
            };
            match publish().await {
                // Nothing was sent (the manager's last reconnect had failed, and
                // it reconnects now): safe to try once more.
                Err(e) if e.is_connection_refusal() => publish().await,
                result => result,
            }
        };
        let stamp = match timeout_at(deadline, call).await {
            Ok(Ok(stamp)) => stamp,
            Ok(Err(e)) => return Err(self.publish_failed(Failure::Redis(e))),
            Err(_) => return Err(self.publish_failed(Failure::Timeout(self.timeout))),
        };
        self.metrics.publish.record(started.elapsed().as_secs_f64());
        let mut position = self.position.subscribe();
        let delivered = position.wait_for(|p| *p.epoch == *stamp.epoch && p.offset >= stamp.offset);
        match timeout_at(deadline, delivered).await {
            Ok(Ok(_)) => Ok(stamp),
            _ => Err(self.publish_failed(Failure::NotDelivered {
                offset: stamp.offset,
                timeout: self.timeout,
            })),
        }
    }

    fn publish_failed(&self, failure: Failure) -> BrokerError {
        self.metrics.error(BrokerOp::Publish);
        let unreachable = match &failure {
            Failure::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
            Failure::Timeout(_) => true,
            Failure::NotDelivered { .. } => false,
        };
        if unreachable {
            self.set_up(false, Some(&failure));
        }
        BrokerError {
            broker: Arc::clone(&self.name),
            failure,
        }
    }

    /// Gets the publishing connection going again (the manager reconnects on
    /// the first failure it sees), so health turns SERVING only when a
    /// publish would go through.
    async fn warm_publisher(&self) -> Result<(), Failure> {
        let mut conn = self.publisher.clone();
        let ping = || redis::cmd("PING");
        if ping().query_async::<()>(&mut conn).await.is_err() {
            ping().query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    /// Records a change of reachability: the gauge, and one log line per
    /// change (not per retry).
    fn set_up(&self, up: bool, why: Option<&Failure>) {
        let changed = self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
        self.metrics.up.set(if up { 1.0 } else { 0.0 });
        if !changed {
            return;
        }
        match why {
            _ if up => {
                tracing::info!(broker = %self.name, stream = %self.stream, "broker reachable")
            }
            Some(e) => {
                tracing::warn!(broker = %self.name, error = %e, "broker unreachable; retrying with backoff")
            }
            None => {
                tracing::warn!(broker = %self.name, "broker unreachable; retrying with backoff")
            }
        }
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

/// Mirrors the broker's reachability into the messenger service's health:
/// NOT_SERVING while down, SERVING once the reader reads again. Runs until
/// aborted (the drain stops it first) or the engine is dropped.
pub async fn report_health(mut up: watch::Receiver<bool>, health: HealthReporter) {
    loop {
        let status = if *up.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(SERVICE_NAME, status).await;
        if up.changed().await.is_err() {
            return;
        }
    }
}
