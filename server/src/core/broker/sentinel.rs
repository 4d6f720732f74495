//! Following the primary through Redis Sentinel (issue 25), for a
//! `redis+sentinel://` or `rediss+sentinel://` `MESSENGER_BROKER_URL`
//! ([`super::sentinel_url`]).
//!
//! The primary is asked of the Sentinel with the newest configuration of our
//! master ([`newest`]; through redis-rs's [`SentinelClient`], which checks
//! that the node answers `ROLE` as master) when the reader (re)connects, before a publish while the broker is down, when Redis
//! answers `READONLY` (the node is a replica now), every
//! [`watch::REFRESH_EVERY`], and after a failover ([`watch`], [`pause`]):
//! then of the Sentinel that announced its end, which names the node it
//! just promoted. While a Sentinel fails our master over, sends pause
//! ([`pause`]).
//!
//! Invariants: the publishing connection and the reader always use the same
//! node: a new primary replaces the client, redials the publishing
//! connection and ends the reader's session (it reconnects at once, and its
//! scripts decide whether the new primary holds what this replica delivered,
//! or is a new epoch). A failed resolution changes nothing. Logs and errors
//! name the Sentinels and the master, never a credential.
//!
//! The residual window of the pause: a publish script already sent to the
//! old primary when the first failover event arrives still completes there.
//! The leader moves from `+try-failover` to the promotion on its own timer
//! (one step per Sentinel tick, about 100 ms, at least three steps), and a
//! script with its `WAIT` takes a few milliseconds, so in practice it is
//! answered before the promotion; one stuck longer (a `WAIT` for a slow
//! replica, up to `MESSENGER_BROKER_TIMEOUT_MS`) can be acknowledged on the
//! old primary after a replica was promoted, and is then reported as a gap
//! (a new epoch), never lost silently. So is a failover whose start this
//! replica did not hear (every Sentinel unreachable from it while the
//! others fail over).

mod events;
mod newest;
mod pause;
mod watch;

pub(super) use pause::Pause;
pub(super) use watch::watch;

use super::sentinel_url::SentinelUrl;
use super::{BrokerConfigError, BrokerSettings, Failure, RedisEngine, connect};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsMode};
use std::time::Duration;

/// The Sentinels and the master name; asks them for the primary.
pub(super) struct Follower {
    client: tokio::sync::Mutex<SentinelClient>,
    /// Each Sentinel on its own, in the URL's order: the subscriptions, and
    /// the one to ask after it announced the end of a failover.
    each: Vec<Sentinel>,
    master: String,
    /// "Sentinels 127.0.0.1:26379,... for master mymaster": what a failed
    /// resolution names.
    names: String,
    /// Sends paused while a failover of our master is under way.
    pub(super) pause: Pause,
}

/// One Sentinel: `host:port`, a client that asks only it, and a connection
/// to it for `SENTINEL MASTER` ([`newest`]).
struct Sentinel {
    name: String,
    client: tokio::sync::Mutex<SentinelClient>,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Follower {
    /// From the configured Sentinel URL and the broker's TLS files.
    pub(super) fn new(settings: &BrokerSettings) -> Result<Self, BrokerConfigError> {
        let url = (SentinelUrl::parse(&settings.url))
            .map_err(|e| BrokerConfigError::Sentinel(e.to_string()))?;
        let certs = connect::certificates(settings, url.tls)?;
        let hosts: Vec<String> = (url.sentinels.iter())
            .map(|(host, port)| format!("{host}:{port}"))
            .collect();
        let client = |sentinels: &[(String, u16)]| -> Result<_, BrokerConfigError> {
            let client = builder(&url, sentinels, certs.clone())?.build();
            Ok(tokio::sync::Mutex::new(
                client.map_err(BrokerConfigError::Url)?,
            ))
        };
        let each = (url.sentinels.chunks(1).zip(&hosts))
            .map(|(one, name)| {
                Ok(Sentinel {
                    name: name.clone(),
                    client: client(one)?,
                    conn: tokio::sync::Mutex::default(),
                })
            })
            .collect::<Result<Vec<_>, BrokerConfigError>>()?;
        Ok(Self {
            client: client(&url.sentinels)?,
            pause: Pause::new(each.len()),
            each,
            names: format!("Sentinels {} for master {:?}", hosts.join(","), url.master),
            master: url.master,
        })
    }

    /// A client for the node the Sentinels (or only Sentinel `via`) name as
    /// primary (checked with `ROLE`), within `timeout`.
    async fn primary(
        &self,
        via: Option<usize>,
        timeout: Duration,
    ) -> Result<redis::Client, Failure> {
        let (client, names) = match via.and_then(|i| self.each.get(i)) {
            Some(one) => (
                &one.client,
                format!("Sentinel {} for master {:?}", one.name, self.master),
            ),
            None => (&self.client, self.names.clone()),
        };
        let asked = async { client.lock().await.async_get_client().await };
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Failure::NoPrimary(format!("{names}: {e}"))),
            Err(_) => Err(Failure::NoPrimary(format!(
                "{names}: no answer within {timeout:?}"
            ))),
        }
    }
}

/// A Sentinel client for `sentinels` of `url`, with the data nodes' and the
/// Sentinels' credentials and TLS.
fn builder(
    url: &SentinelUrl,
    sentinels: &[(String, u16)],
    certs: Option<redis::TlsCertificates>,
) -> Result<SentinelClientBuilder, BrokerConfigError> {
    let addrs = sentinels.iter().map(|(host, port)| match url.tls {
        true => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        false => ConnectionAddr::Tcp(host.clone(), *port),
    });
    let mut builder = SentinelClientBuilder::new(addrs, &url.master, SentinelServerType::Master)
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
    Ok(builder)
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
    /// the one in use, switches to it: the one with the newest
    /// configuration of our master ([`newest`]), or, when none says, the
    /// first that names a node answering as master. Without Sentinel,
    /// nothing to do.
    pub(super) async fn follow(&self) -> Result<(), Failure> {
        let Some(follower) = &self.follower else {
            return Ok(());
        };
        let via = follower.newest(self.timeout).await;
        self.follow_via(via).await
    }

    /// [`Self::follow`], asking only Sentinel `via` when given.
    async fn follow_via(&self, via: Option<usize>) -> Result<(), Failure> {
        let Some(follower) = &self.follower else {
            return Ok(());
        };
        let client = follower.primary(via, self.timeout).await?;
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
