//! Listening to the Sentinels: one subscription per Sentinel of the URL
//! (only the leader of a failover announces its steps, and any of them may
//! lead), for the failover events of our master ([`super::events`]), and a
//! timer that asks for the primary every [`REFRESH_EVERY`] or when nudged
//! (`READONLY`), because an event can be missed (redis-rs does not follow a
//! failover on connections already open, redis-rs/redis-rs#1438).
//!
//! Each (re)subscription also asks its Sentinel `SENTINEL MASTER`: its
//! `failover-timeout` bounds the pause a failover it announces causes, and
//! its `failover_in_progress` flag says whether one is under way, so a
//! start or an end missed while unsubscribed is caught up at once.
//!
//! Invariants: every task holds the engine only while handling one event,
//! so dropping the engine ends them; a Sentinel that does not answer is
//! tried again every [`RESUBSCRIBE_EVERY`], and its failover still expires.

use super::super::RedisEngine;
use super::Sentinel;
use super::events::{self, ABORTED, ENDED, Event, STARTED, SWITCH_MASTER};
use super::pause::End;
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the primary is asked again without any event.
pub(in crate::core::broker) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How soon a Sentinel that could not be subscribed to is tried again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(500);
/// The bound of a failover a Sentinel announced, when it does not say its
/// own `failover-timeout`: Redis's default, 3 minutes.
const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);

/// Follows the Sentinels until the engine is dropped.
pub(in crate::core::broker) async fn watch(broker: Weak<RedisEngine>) {
    let sentinels = (broker.upgrade())
        .and_then(|e| e.follower.as_ref().map(|f| f.each.len()))
        .unwrap_or(0);
    for i in 0..sentinels {
        tokio::spawn(listen(broker.clone(), i));
    }
    refresh(broker).await;
}

/// Asks for the primary every [`REFRESH_EVERY`], and when nudged.
async fn refresh(broker: Weak<RedisEngine>) {
    let mut every = tokio::time::interval(REFRESH_EVERY);
    every.tick().await;
    loop {
        let Some(resolve) = broker.upgrade().map(|e| Arc::clone(&e.resolve)) else {
            return;
        };
        tokio::select! {
            () = resolve.notified() => {}
            _ = every.tick() => {}
        }
        let Some(engine) = broker.upgrade() else {
            return;
        };
        if let Err(e) = engine.follow().await {
            tracing::debug!(broker = %engine.name, error = %e, "broker primary not resolved");
        }
    }
}

/// What a Sentinel says of our master when subscribed to.
struct State {
    failover_timeout: Option<Duration>,
    under_way: bool,
}

/// Sentinel `i`'s events, resubscribing whenever its subscription ends.
async fn listen(broker: Weak<RedisEngine>, i: usize) {
    let mut bound = DEFAULT_FAILOVER_TIMEOUT;
    loop {
        let Some(engine) = broker.upgrade() else {
            return;
        };
        let Some(follower) = &engine.follower else {
            return;
        };
        let sentinel = &follower.each[i];
        let (name, master) = (sentinel.name.clone(), follower.master.clone());
        let subscribed = tokio::time::timeout(engine.timeout, subscribe(sentinel, &master)).await;
        let messages = match subscribed {
            Ok(Ok((pubsub, state))) => {
                bound = state.failover_timeout.unwrap_or(bound);
                if state.under_way {
                    engine.failover_started(i, &name, "failover_in_progress", bound);
                } else if follower.pause.deadline(i).is_some() {
                    engine.failover_ended(i, End::Ended);
                }
                Some(pubsub.into_on_message())
            }
            Ok(Err(e)) => {
                tracing::debug!(broker = %engine.name, sentinel = %name, error = %e, "Sentinel not subscribed to");
                None
            }
            Err(_) => None,
        };
        drop(engine);
        follow_events(&broker, i, (&name, &master), bound, messages).await;
    }
}

/// Handles Sentinel `i`'s events until its subscription ends (or, without
/// one, for [`RESUBSCRIBE_EVERY`]), and the expiry of its failover.
async fn follow_events(
    broker: &Weak<RedisEngine>,
    i: usize,
    (name, master): (&str, &str),
    bound: Duration,
    mut messages: Option<redis::aio::PubSubStream>,
) {
    let retry = tokio::time::sleep(RESUBSCRIBE_EVERY);
    tokio::pin!(retry);
    loop {
        let Some(deadline) = broker.upgrade().map(|e| e.failover_deadline(i)) else {
            return;
        };
        let expiry = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let message = async {
            match messages.as_mut() {
                Some(m) => m.next().await,
                None => {
                    (&mut retry).await;
                    None
                }
            }
        };
        tokio::select! {
            message = message => {
                let Some(message) = message else {
                    return;
                };
                let channel = message.get_channel_name();
                let payload: String = message.get_payload().unwrap_or_default();
                let (Some(event), Some(engine)) = (events::parse(channel, &payload, master), broker.upgrade()) else {
                    continue;
                };
                match event {
                    Event::Started => engine.failover_started(i, name, channel, bound),
                    Event::Ended => engine.failover_ended(i, End::Ended),
                    Event::Switched(..) => engine.failover_ended(i, End::Switched),
                }
            }
            () = expiry => {
                let Some(engine) = broker.upgrade() else {
                    return;
                };
                if engine.failover_deadline(i) == deadline {
                    tracing::warn!(
                        broker = %engine.name,
                        sentinel = %name,
                        failover_timeout = ?bound,
                        "broker failover announced by a Sentinel not seen to end within its \
                         failover-timeout; asking the Sentinels for the primary"
                    );
                    engine.failover_ended(i, End::Expired);
                }
            }
        }
    }
}

/// Subscribes to `sentinel`'s failover events, then asks it about `master`.
async fn subscribe(
    sentinel: &Sentinel,
    master: &str,
) -> redis::RedisResult<(redis::aio::PubSub, State)> {
    let client = sentinel
        .client
        .lock()
        .await
        .async_get_sentinel_client()
        .await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channels: Vec<&str> = (STARTED.iter().chain(&ENDED).copied())
        .chain([SWITCH_MASTER])
        .collect();
    pubsub.subscribe(channels).await?;
    pubsub.psubscribe(ABORTED).await?;
    // After subscribing, so a failover starting in between is seen either way.
    let info = sentinel.master(master).await.unwrap_or_default();
    let state = State {
        failover_timeout: (info.get("failover-timeout"))
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis),
        under_way: (info.get("flags")).is_some_and(|f| f.contains("failover_in_progress")),
    };
    Ok((pubsub, state))
}
