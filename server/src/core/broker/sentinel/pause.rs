//! Publishing paused while a Sentinel fails our master over, so that no
//! send is acknowledged on a primary that is about to be replaced.
//!
//! Why: in a failover the leading Sentinel promotes a replica
//! (`REPLICAOF NO ONE`) first and reconfigures the other nodes after. In
//! between, the old primary still takes writes, and `WAIT 1` can still
//! succeed there (the replica not promoted still copies it), so a send
//! acknowledged then is delivered and later rolled back: a new epoch, a gap
//! on every subscriber. So from the first event that announces a failover of
//! our master ([`super::events::STARTED`], from any Sentinel) until the
//! failover is over, a send fails fast, "not sent; a resend is safe", and
//! health is NOT_SERVING.
//!
//! The pause ends only after the primary was asked again: once every
//! Sentinel that announced a failover has announced its end
//! (`+switch-master`, `+failover-end`, an abort), this replica asks the
//! Sentinel that ended last (another one may still name the old primary,
//! which answers `ROLE` as master for a few seconds more), follows the node
//! it names, then lifts the pause. A
//! failover whose end is not seen within the Sentinel's `failover-timeout`
//! (its own bound for every step) ends the same way, asking all of them.
//! A resolution that fails is retried every [`RESOLVE_RETRY`]; the pause
//! holds meanwhile.
//!
//! Invariants: paused while any Sentinel has a failover of our master under
//! way, or while the primary is being asked again after one; one WARN at
//! the pause and one INFO at the resume, per pause;
//! `messenger_broker_failover_pauses_total` counts pauses.

use super::super::{Failure, RedisEngine};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How soon a failed resolution after a failover is tried again.
pub(super) const RESOLVE_RETRY: Duration = Duration::from_millis(100);

/// How a failover ended, for one Sentinel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// `+switch-master`: this Sentinel names the new primary. Only the
    /// failover this Sentinel announced is over: the others learn of the
    /// new primary from the leader's hellos while the leader is still
    /// reconfiguring the replicas, and the old primary still takes writes.
    Switched,
    /// Aborted, or over on this Sentinel without a switch yet.
    Ended,
    /// Not seen to end within the Sentinel's `failover-timeout`.
    Expired,
}

/// The pause's state; one per engine with Sentinel.
pub(in crate::core::broker) struct Pause {
    /// Per Sentinel (its place in the URL), while it has a failover of our
    /// master under way: when this replica stops waiting for its end.
    under_way: parking_lot::Mutex<Vec<Option<Instant>>>,
    /// Since when sends are paused, and the event that paused them.
    paused: parking_lot::Mutex<Option<Paused>>,
    /// A resolution after a failover is running ([`resume`]).
    resolving: AtomicBool,
}

#[derive(Debug, Clone)]
struct Paused {
    since: Instant,
    sentinel: String,
    event: String,
}

impl Pause {
    pub(super) fn new(sentinels: usize) -> Self {
        Self {
            under_way: parking_lot::Mutex::new(vec![None; sentinels]),
            paused: parking_lot::Mutex::new(None),
            resolving: AtomicBool::new(false),
        }
    }

    /// When this replica stops waiting for the end of the failover Sentinel
    /// `i` announced, if one is under way.
    pub(super) fn deadline(&self, i: usize) -> Option<Instant> {
        self.under_way.lock().get(i).copied().flatten()
    }
}

impl RedisEngine {
    /// When this replica stops waiting for the end of the failover Sentinel
    /// `i` announced, if one is under way.
    pub(super) fn failover_deadline(&self, i: usize) -> Option<Instant> {
        self.follower.as_ref()?.pause.deadline(i)
    }

    /// While sends are paused: what a send is answered.
    pub(in crate::core::broker) fn failing_over(&self) -> Option<Failure> {
        let paused = self.follower.as_ref()?.pause.paused.lock().clone()?;
        Some(Failure::FailingOver {
            sentinel: paused.sentinel,
            event: paused.event,
            since: paused.since.elapsed(),
        })
    }

    /// Sentinel `i` (`sentinel`) announced `event`, a failover of our master
    /// under way, which it bounds by `bound`: sends pause.
    pub(super) fn failover_started(&self, i: usize, sentinel: &str, event: &str, bound: Duration) {
        let Some(follower) = &self.follower else {
            return;
        };
        let now = Instant::now();
        if let Some(slot) = follower.pause.under_way.lock().get_mut(i) {
            slot.get_or_insert(now + bound);
        }
        let mut paused = follower.pause.paused.lock();
        if paused.is_some() {
            return;
        }
        *paused = Some(Paused {
            since: now,
            sentinel: sentinel.to_owned(),
            event: event.to_owned(),
        });
        drop(paused);
        self.metrics.failover_paused();
        self.refresh_up();
        tracing::warn!(
            broker = %self.name,
            sentinel,
            event,
            "broker primary failing over (Sentinel); sends paused (UNAVAILABLE, not sent) and \
             health NOT_SERVING until the new primary is in use"
        );
    }

    /// The failover Sentinel `i` announced is over (`end`): once no
    /// Sentinel has one under way, asks the primary again and resumes.
    pub(super) fn failover_ended(self: &Arc<Self>, i: usize, end: End) {
        let Some(follower) = &self.follower else {
            return;
        };
        {
            let mut under_way = follower.pause.under_way.lock();
            if let Some(slot) = under_way.get_mut(i) {
                *slot = None;
            }
            if under_way.iter().any(Option::is_some) {
                return;
            }
        }
        if follower.pause.paused.lock().is_none() {
            // Not paused (its start was missed): follow the switch anyway.
            if end == End::Switched {
                let engine = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(e) = engine.follow_via(Some(i)).await {
                        tracing::debug!(broker = %engine.name, error = %e, "broker primary not resolved");
                    }
                });
            }
            return;
        }
        if follower.pause.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        // Asked of the Sentinel that ended it; after a timeout, of the one
        // with the newest configuration.
        let via = (end != End::Expired).then_some(i);
        tokio::spawn(resume(Arc::downgrade(self), via));
    }
}

/// Follows the primary `via` names (or the Sentinels name), retrying,
/// then lifts the pause, unless another failover started meanwhile.
async fn resume(broker: std::sync::Weak<RedisEngine>, via: Option<usize>) {
    loop {
        let Some(engine) = broker.upgrade() else {
            return;
        };
        let Some(follower) = &engine.follower else {
            return;
        };
        let pause = &follower.pause;
        if pause.under_way.lock().iter().any(Option::is_some) {
            pause.resolving.store(false, Ordering::Release);
            return;
        }
        let followed = match via {
            Some(_) => engine.follow_via(via).await,
            None => engine.follow().await,
        };
        match followed {
            Ok(()) => {
                let lifted = {
                    let under_way = pause.under_way.lock();
                    let lifted = (under_way.iter().all(Option::is_none))
                        .then(|| pause.paused.lock().take())
                        .flatten();
                    pause.resolving.store(false, Ordering::Release);
                    lifted
                };
                if let Some(paused) = lifted {
                    engine.refresh_up();
                    let primary = engine.primary.lock().clone().unwrap_or_default();
                    tracing::info!(
                        broker = %engine.name,
                        primary = %format!("{}:{}", primary.0, primary.1),
                        paused_ms = paused.since.elapsed().as_millis() as u64,
                        "broker failover over; sends resume"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::debug!(broker = %engine.name, error = %e, "broker primary not resolved after a failover; retrying");
            }
        }
        drop(engine);
        tokio::time::sleep(RESOLVE_RETRY).await;
    }
}
