//! Refusals: answers with which Redis turns down a request that sending it
//! again cannot change (out of memory, a refused login, a missing
//! permission, a key of another type, a script it will not load, a
//! read-only replica, a failing disk), as opposed to a broker that is slow or
//! unreachable.
//!
//! While the broker refuses this replica's writes, health is NOT_SERVING and
//! `messenger_broker_up` is 0 (with one log line naming the cause and the
//! fix, and `messenger_broker_refusals_total{reason}` counting each
//! refusal). A [`probe`](RedisEngine::probe_refused) every [`PROBE_EVERY`]
//! runs the publish path without its append on a fresh publishing
//! connection, so the replica serves again by itself once the cause is
//! gone: a password put back, an ACL user enabled again, memory freed.
//!
//! Invariants: a refusal is set only from an answer Redis gave; it clears
//! only on a publish or probe that Redis took; the publishing connection is
//! replaced before every probe (redis-rs's `ConnectionManager` redials only
//! after I/O errors, never after a refused login).

use super::{Failure, RedisEngine, script};
use crate::app::config::{ENV_BROKER_STREAM, ENV_BROKER_STREAM_BYTES, ENV_BROKER_URL};
use redis::aio::ConnectionManager;
use std::sync::Weak;
use std::time::Duration;

/// How often a refused broker is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Why the broker refuses writes; the `reason` label of
/// `messenger_broker_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `OOM`: Redis is at `maxmemory` with a policy that evicts nothing.
    OutOfMemory,
    /// `NOAUTH`, `WRONGPASS` or a refused login.
    Auth,
    /// `NOPERM`: the ACL user lacks a command or key.
    Permission,
    /// `WRONGTYPE`: the stream or metadata key holds another type.
    WrongType,
    /// `NOSCRIPT` after the client's own reload: scripting is refused.
    NoScript,
    /// `READONLY`: a replica, not the primary.
    ReadOnly,
    /// `MISCONF`: Redis stops writes because it cannot persist.
    Persistence,
}

impl Refusal {
    pub const ALL: [Self; 7] = [
        Self::OutOfMemory,
        Self::Auth,
        Self::Permission,
        Self::WrongType,
        Self::NoScript,
        Self::ReadOnly,
        Self::Persistence,
    ];

    /// The refusal `e` is, if it is one.
    pub fn of(e: &redis::RedisError) -> Option<Self> {
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return Some(Self::Auth);
        }
        Some(match e.code()? {
            "OOM" => Self::OutOfMemory,
            "NOAUTH" | "WRONGPASS" => Self::Auth,
            "NOPERM" => Self::Permission,
            "WRONGTYPE" => Self::WrongType,
            "NOSCRIPT" => Self::NoScript,
            "READONLY" => Self::ReadOnly,
            "MISCONF" => Self::Persistence,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OutOfMemory => "oom",
            Self::Auth => "auth",
            Self::Permission => "noperm",
            Self::WrongType => "wrongtype",
            Self::NoScript => "noscript",
            Self::ReadOnly => "readonly",
            Self::Persistence => "misconf",
        }
    }

    /// What the operator must do.
    pub fn remedy(self) -> String {
        match self {
            Self::OutOfMemory => format!(
                "Redis is at maxmemory and refuses writes, and the stream has no more room to give \
                 (this server trims only entries it has delivered): raise Redis maxmemory, free the \
                 memory other keys hold, or lower {ENV_BROKER_STREAM_BYTES}"
            ),
            Self::Auth => format!(
                "Redis refused this server's login: fix the password or user in {ENV_BROKER_URL}, \
                 or enable the ACL user again; this server reconnects by itself"
            ),
            Self::Permission => format!(
                "the ACL user of {ENV_BROKER_URL} lacks a permission: it needs +@stream +@hash \
                 +@scripting +ping +time on the keys of {ENV_BROKER_STREAM}"
            ),
            Self::WrongType => format!(
                "another program uses the keys of {ENV_BROKER_STREAM} (or its :meta) with another \
                 type: choose another {ENV_BROKER_STREAM}, or delete those keys"
            ),
            Self::NoScript => "Redis refuses this server's scripts (scripting disabled or \
                 SCRIPT LOAD not allowed): allow EVALSHA and SCRIPT LOAD"
                .to_owned(),
            Self::ReadOnly => {
                format!("this Redis is a read-only replica: point {ENV_BROKER_URL} at the primary")
            }
            Self::Persistence => "Redis stops writes because it cannot persist (MISCONF): fix its \
                 disk or its RDB save (see its log), or set stop-writes-on-bgsave-error no"
                .to_owned(),
        }
    }
}

impl RedisEngine {
    /// Records that the broker refused a write (`Some`) or took one again
    /// (`None`): health, the gauge, the counter, and one log line per change.
    pub(super) fn set_refused(&self, refusal: Option<(Refusal, &Failure)>) {
        if let Some((refusal, _)) = refusal {
            self.metrics.refused(refusal.label());
        }
        let now = refusal.map(|(r, _)| r);
        let was = std::mem::replace(&mut *self.refused.lock(), now);
        if was != now {
            match refusal {
                Some((refusal, failure)) => tracing::error!(
                    broker = %self.name,
                    reason = refusal.label(),
                    error = %failure,
                    remedy = %refusal.remedy(),
                    "broker refuses writes; health NOT_SERVING until it takes them again"
                ),
                None => tracing::info!(broker = %self.name, "broker takes writes again"),
            }
        }
        self.refresh_up();
    }

    /// The refusal in `failure`, if any, recorded. `true` if it was one.
    pub(super) fn note_refusal(&self, failure: &Failure) -> bool {
        let refusal = match failure {
            Failure::Redis(e) | Failure::Unreachable(e) => Refusal::of(e),
            _ => None,
        };
        if let Some(refusal) = refusal {
            self.set_refused(Some((refusal, failure)));
        }
        refusal.is_some()
    }

    pub(super) fn refusal(&self) -> Option<Refusal> {
        *self.refused.lock()
    }

    /// A fresh publishing connection in place of the current one.
    pub(super) fn redial(&self) {
        match ConnectionManager::new_lazy_with_config(self.client(), self.manager.clone()) {
            Ok(fresh) => *self.publisher.lock() = fresh,
            Err(e) => {
                tracing::warn!(broker = %self.name, error = %e, "broker publishing connection not replaced")
            }
        }
    }

    /// While refused: a fresh connection, then the publish path without its
    /// append; clears the refusal once Redis takes it.
    async fn probe_refused(&self) {
        if self.refusal().is_none() {
            return;
        }
        self.redial();
        let mut conn = self.publisher();
        let seen = self.seen();
        let keys = (&*self.stream, &*self.meta);
        let probe = script::probe(&mut conn, keys, seen.get());
        match tokio::time::timeout(self.timeout, probe).await {
            Ok(Ok(())) => self.set_refused(None),
            Ok(Err(e)) => {
                let failure = Failure::Redis(e);
                if !self.note_refusal(&failure) {
                    tracing::debug!(broker = %self.name, error = %failure, "broker probe failed");
                }
            }
            Err(_) => {}
        }
    }
}

/// Probes while the broker refuses writes, until the engine is dropped.
pub(super) async fn watch(broker: Weak<RedisEngine>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        broker.probe_refused().await;
    }
}
