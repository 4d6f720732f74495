//! The Redis engine's errors: what a caller is told when the broker cannot
//! take a message ([`BrokerError`], always naming the broker's URL without
//! credentials), and a broker setting that cannot be used at start
//! ([`BrokerConfigError`], naming its variable).

use super::Refusal;
use crate::app::config::{ENV_BROKER_MIN_REPLICAS, ENV_BROKER_TIMEOUT_MS, ENV_BROKER_URL};
use std::sync::Arc;
use std::time::Duration;

/// Why the broker could not take or confirm a message. Its text starts with
/// the broker's URL (without credentials); a TLS failure that a setting
/// explains is said as that misconfiguration, naming the variable and the fix.
#[derive(Debug)]
pub struct BrokerError {
    pub broker: Arc<str>,
    pub failure: Failure,
}

// As before this impl: the failure is in the text, not a source.
impl std::error::Error for BrokerError {}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let broker = &self.broker;
        let tls = |e| super::connect::tls_misconfiguration(broker, e);
        match &self.failure {
            Failure::Redis(e) => match tls(e) {
                Some(m) => write!(f, "broker {broker}: {m}"),
                None => write!(f, "broker {broker}: {}", self.failure),
            },
            Failure::Unreachable(e) => match tls(e) {
                Some(m) => write!(f, "broker {broker}: unreachable, message not sent: {m}"),
                None => write!(f, "broker {broker}: {}", self.failure),
            },
            _ => write!(f, "broker {broker}: {}", self.failure),
        }
    }
}

impl BrokerError {
    /// What the caller may do. A TLS misconfiguration needs the setting fixed
    /// first. A resend is safe only when the broker surely
    /// did not run the publish script (refused connection, a script error);
    /// after a timeout or a dropped connection the script may have run, so
    /// the message may still reach every subscriber and a resend can
    /// duplicate it (Redis gives no idempotent publish here).
    pub fn advice(&self) -> &'static str {
        let misconfigured = |e| super::connect::tls_misconfiguration(&self.broker, e).is_some();
        match &self.failure {
            // The handshake failed, so no script ran; but retrying cannot
            // help until the file or setting named in the text is fixed.
            Failure::Redis(e) | Failure::Unreachable(e) if misconfigured(e) => {
                "nothing was sent; a resend fails the same way until the TLS setting above is fixed"
            }
            // Redis answered no; the same request is refused the same way
            // until the cause named in the text is gone.
            Failure::Redis(e) | Failure::Unreachable(e) if Refusal::of(e).is_some() => {
                "nothing was stored; a resend is refused the same way until the cause above is fixed"
            }
            Failure::Redis(e)
                if e.is_connection_refusal()
                    || !(e.is_timeout() || e.is_connection_dropped() || e.is_io_error()) =>
            {
                "retry with backoff"
            }
            Failure::Unreachable(_) | Failure::Queued(_) | Failure::NoPrimary(_) => {
                "retry with backoff"
            }
            Failure::NotPrimary(_) | Failure::Moved | Failure::FailingOver { .. } => {
                "retry: nothing was stored, a resend is safe"
            }
            Failure::Lost { .. } => "resend it",
            Failure::NotDelivered { .. } => "do not resend it",
            Failure::NotReplicated { .. } => {
                "outcome unknown: it will reach subscribers unless the primary fails before it is \
                 replicated, so a resend can duplicate it"
            }
            Failure::Redis(_) | Failure::Timeout(_) | Failure::Stopped => {
                "outcome unknown: it may still be stored and delivered, so a resend can duplicate it"
            }
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("{}", describe(.0))]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?} ({ENV_BROKER_TIMEOUT_MS})")]
    Timeout(Duration),
    /// Still queued on this replica when its sender's deadline came, so
    /// never published: the broker is slow or this replica overloaded.
    #[error(
        "not sent: still queued on this server after {0:?} ({ENV_BROKER_TIMEOUT_MS}; \
         the broker is slow or this server is overloaded)"
    )]
    Queued(Duration),
    /// Stored, but the broker lost its history (a new epoch) before this
    /// replica delivered it: the message is gone.
    #[error(
        "stored at offset {offset}, but the broker lost its history (a new epoch) before \
         this server delivered it, so it is lost"
    )]
    Lost { offset: u64 },
    /// The broker was down and still did not answer a `PING`, so the
    /// message was not sent.
    #[error("unreachable, message not sent: {}", describe(.0))]
    Unreachable(redis::RedisError),
    #[error(
        "stored at offset {offset}, but this server's reader has not delivered it within {timeout:?} \
         (the broker may be down; the message will still reach subscribers when it recovers)"
    )]
    NotDelivered { offset: u64, timeout: Duration },
    /// Stored on the primary, but fewer replicas than
    /// `MESSENGER_BROKER_MIN_REPLICAS` confirmed it in time.
    #[error(
        "stored at offset {offset} on the primary, but only {replicas} of {wanted} replicas \
         ({ENV_BROKER_MIN_REPLICAS}) confirmed it in time: not yet replicated, so a failover \
         now could lose it"
    )]
    NotReplicated {
        offset: u64,
        replicas: u64,
        wanted: u64,
    },
    /// With Sentinel: no Sentinel named a primary that answers as one (all
    /// unreachable, the master name unknown to them, or a failover under
    /// way). Nothing was sent.
    #[error("no primary: {0}; message not sent")]
    NoPrimary(String),
    /// With Sentinel: the node in use answered `READONLY` (it was demoted to
    /// a replica), so the script stored nothing; the Sentinels are asked again.
    #[error("not sent: the node in use is no longer the primary ({0}); following the new one")]
    NotPrimary(redis::RedisError),
    /// With Sentinel: a Sentinel announced a failover of our master, so
    /// sends pause until the new primary is in use; nothing was sent.
    #[error(
        "not sent: the primary is failing over (Sentinel {sentinel} announced {event} \
         {since:.1?} ago); sends resume once the new primary is in use"
    )]
    FailingOver {
        sentinel: String,
        event: String,
        since: Duration,
    },
    /// With Sentinel: the reader's node is not the primary any more.
    #[error("the primary moved (Sentinel failover); reconnecting to the new one")]
    Moved,
    /// The publishing task ended (the server is shutting down) with the
    /// message taken but unanswered.
    #[error("this server stopped publishing (shutting down) before the broker answered")]
    Stopped,
}

/// A Redis error as one line: "connection refused", a refusal with what to
/// do about it, or the TLS misconfiguration behind it.
fn describe(e: &redis::RedisError) -> String {
    if let Some(tls) = super::connect::tls_misconfiguration("", e) {
        tls
    } else if let Some(refusal) = Refusal::of(e) {
        format!("refused ({e}): {}", refusal.remedy())
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    }
}

/// A broker setting that cannot be used; `main` prints it as a usage error
/// (exit 2), naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("{ENV_BROKER_URL}: {0}")]
    Url(redis::RedisError),
    #[error(
        "{var} needs a rediss:// or rediss+sentinel:// {ENV_BROKER_URL}: TLS files for a plaintext broker are a mistake"
    )]
    NotTls { var: &'static str },
    #[error("{var} is set but {ENV_BROKER_URL} is not: broker TLS files need a rediss:// broker")]
    NoBroker { var: &'static str },
    #[error(
        "{ENV_BROKER_URL}: {0}; expected redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master-name>"
    )]
    Sentinel(String),
    #[error("{ENV_BROKER_URL}: TLS files not usable: {0}")]
    Tls(redis::RedisError),
    /// Unreadable, not PEM, half a cert/key pair, or a key not the
    /// certificate's (the message names the variable and file).
    #[error(transparent)]
    TlsFile(#[from] messenger_runtime::tls::TlsError),
}
