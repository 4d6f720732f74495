//! Following the primary through Redis Sentinel (issue 25), for a
//! `redis+sentinel://` or `rediss+sentinel://` `MESSENGER_BROKER_URL`
//! ([`super::sentinel_url`]).
//!
//! The primary is asked of the Sentinels (redis-rs's [`SentinelClient`]: the
//! first Sentinel that names a node that answers `ROLE` as master) when the
//! reader (re)connects, before a publish while the broker is down, when a
//! Sentinel announces `+switch-master` for our master, when Redis answers
//! `READONLY` (the node is a replica now), and every [`REFRESH_EVERY`]
//! (a `+switch-master` can be missed: redis-rs does not follow a failover on
//! connections already open, redis-rs/redis-rs#1438).
//!
//! Invariants: the publishing connection and the reader always use the same
//! node: a new primary replaces the client, redials the publishing
//! connection and ends the reader's session (it reconnects at once, and its
//! scripts decide whether the new primary holds what this replica delivered,
//! or is a new epoch). A failed resolution changes nothing. Logs and errors
//! name the Sentinels and the master, never a credential.

use super::sentinel_url::SentinelUrl;
use super::{BrokerConfigError, BrokerSettings, Failure, RedisEngine, connect};
use futures_util::StreamExt;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsMode};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the primary is asked again without any event.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// The channel on which a Sentinel announces a new primary.
const SWITCH_MASTER: &str = "+switch-master";

/// The Sentinels and the master name; asks them for the primary.
pub(super) struct Follower {
    client: tokio::sync::Mutex<SentinelClient>,
    master: String,
    /// "Sentinels 127.0.0.1:26379,... for master mymaster": what a failed
    /// resolution names.
    names: String,
}

impl Follower {
    /// From the configured Sentinel URL and the broker's TLS files.
    pub(super) fn new(settings: &BrokerSettings) -> Result<Self, BrokerConfigError> {
        let url = (SentinelUrl::parse(&settings.url))
            .map_err(|e| BrokerConfigError::Sentinel(e.to_string()))?;
        let certs = connect::certificates(settings, url.tls)?;
        let addrs = (url.sentinels.iter()).map(|(host, port)| match url.tls {
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, &url.master, SentinelServerType::Master)
                .map_err(BrokerConfigError::Url)?;
        if url.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certs) = certs {
                builder = builder
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_certificates(certs);
            }
        }
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(user) = &url.sentinel_username {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &url.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let hosts: Vec<String> = (url.sentinels.iter())
            .map(|(host, port)| format!("{host}:{port}"))
            .collect();
        Ok(Self {
            client: tokio::sync::Mutex::new(builder.build().map_err(BrokerConfigError::Url)?),
            names: format!("Sentinels {} for master {:?}", hosts.join(","), url.master),
            master: url.master,
        })
    }

    /// A client for the node the Sentinels name as primary (checked with
    /// `ROLE`), within `timeout`.
    async fn primary(&self, timeout: Duration) -> Result<redis::Client, Failure> {
        let asked = async { self.client.lock().await.async_get_client().await };
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Failure::NoPrimary(format!("{}: {e}", self.names))),
            Err(_) => Err(Failure::NoPrimary(format!(
                "{}: no answer within {timeout:?}",
                self.names
            ))),
        }
    }
}

/// `host:port` of a client's node.
pub(super) fn address(client: &redis::Client) -> (String, u16) {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        other => (other.to_string(), 0),
    }
}

impl RedisEngine {
    /// Asks the Sentinels for the primary and, when it is another node than
    /// the one in use, switches to it. Without Sentinel, nothing to do.
    pub(super) async fn follow(&self) -> Result<(), Failure> {
        let Some(follower) = &self.follower else {
            return Ok(());
        };
        let client = follower.primary(self.timeout).await?;
        let new = address(&client);
        let old = {
            let mut current = self.primary.lock();
            if current.as_ref() == Some(&new) {
                return Ok(());
            }
            current.replace(new.clone())
        };
        *self.client.lock() = client;
        self.redial();
        self.moved.send_modify(|generation| *generation += 1);
        let (host, port) = &new;
        self.metrics.primary(old.as_ref(), &new);
        match &old {
            Some((old_host, old_port)) => tracing::warn!(
                broker = %self.name,
                primary = %format!("{host}:{port}"),
                previous = %format!("{old_host}:{old_port}"),
                "broker primary changed (Sentinel failover); following it"
            ),
            None => tracing::info!(
                broker = %self.name,
                primary = %format!("{host}:{port}"),
                "broker primary found through Sentinel"
            ),
        }
        Ok(())
    }

    /// `READONLY` from the node in use, with Sentinel: it is a replica now.
    /// Returns the failure as "not the primary" (nothing was stored) and
    /// asks the Sentinels again.
    pub(super) fn not_primary(&self, failure: Failure) -> Failure {
        let readonly = |e: &redis::RedisError| e.code() == Some("READONLY");
        match failure {
            Failure::Redis(e) | Failure::Unreachable(e)
                if self.follower.is_some() && readonly(&e) =>
            {
                self.resolve.notify_one();
                Failure::NotPrimary(e)
            }
            other => other,
        }
    }
}

/// Follows the primary until the engine is dropped: `+switch-master` on a
/// Sentinel, a `READONLY` answer ([`RedisEngine::not_primary`]), and a timer.
pub(super) async fn watch(broker: Weak<RedisEngine>) {
    loop {
        let Some(engine) = broker.upgrade() else {
            return;
        };
        let Some(follower) = &engine.follower else {
            return;
        };
        let sentinel = async {
            follower
                .client
                .lock()
                .await
                .async_get_sentinel_client()
                .await
        };
        let subscribed = async {
            let mut pubsub = sentinel.await?.get_async_pubsub().await?;
            pubsub.subscribe(SWITCH_MASTER).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = (tokio::time::timeout(engine.timeout, subscribed).await)
            .ok()
            .and_then(Result::ok);
        let master = follower.master.clone();
        let resolve = Arc::clone(&engine.resolve);
        drop(engine);
        follow_events(&broker, &resolve, pubsub, &master).await;
    }
}

/// Re-resolves on each event until the subscription ends (its Sentinel
/// went away), or, without one, for one [`REFRESH_EVERY`].
async fn follow_events(
    broker: &Weak<RedisEngine>,
    resolve: &Notify,
    mut pubsub: Option<redis::aio::PubSub>,
    master: &str,
) {
    let mut messages = pubsub.as_mut().map(|p| p.on_message());
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.tick().await;
    loop {
        let event = async {
            match messages.as_mut() {
                Some(m) => m.next().await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            message = event => match message {
                None => true,
                Some(m) => {
                    // "<master> <old ip> <old port> <new ip> <new port>"
                    let payload: String = m.get_payload().unwrap_or_default();
                    if payload.split(' ').next() != Some(master) {
                        continue;
                    }
                    false
                }
            },
            () = resolve.notified() => false,
            _ = refresh.tick() => messages.is_none(),
        };
        let Some(engine) = broker.upgrade() else {
            return;
        };
        if let Err(e) = engine.follow().await {
            tracing::debug!(broker = %engine.name, error = %e, "broker primary not resolved");
        }
        if ended {
            return;
        }
    }
}
