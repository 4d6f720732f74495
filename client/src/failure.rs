//! Why the `ReadMessages` stream is down, told from a failed subscribe, and
//! how that is reported: the log, `/readyz` and `/sendMessage`.
//!
//! Invariants:
//! - A permanent misconfiguration (TLS: [`messenger_runtime::tls::diagnose`];
//!   credentials: UNAUTHENTICATED / PERMISSION_DENIED) is logged at ERROR
//!   once, in one line naming the variable to fix, when it starts or changes;
//!   while it repeats, each attempt is logged at debug. Passing failures are
//!   logged at WARN on the same terms.
//! - Every kind is retried with the same capped, jittered backoff (the
//!   subscriber loop's): fixing a file or restarting the server with the right
//!   one heals the client without a restart.

use crate::config::ENV_CLIENT_TOKEN;
use messenger_runtime::tls::{Misconfiguration, misconfiguration};
use tonic::{Code, Status};

/// Why the last subscribe attempt failed, while that is the latest outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// The server refused this client's token (or its lack of one).
    Refused { code: Code, message: String },
    /// TLS cannot work until a file or a variable changes.
    Misconfigured(Misconfiguration),
    /// Anything that may pass by itself: refused or reset connections,
    /// timeouts, a server shutting down.
    Failing { code: Code, message: String },
}

impl Down {
    /// Classifies a failed `ReadMessages` call.
    pub fn of(status: &Status) -> Self {
        if let Some(m) = misconfiguration(status) {
            return Self::Misconfigured(m);
        }
        let (code, message) = (status.code(), status.message().to_owned());
        if matches!(code, Code::Unauthenticated | Code::PermissionDenied) {
            Self::Refused { code, message }
        } else {
            Self::Failing { code, message }
        }
    }

    /// Whether `self` is a different failure from `previous` (a new one to
    /// report), rather than the same one again.
    pub fn differs_from(&self, previous: Option<&Self>) -> bool {
        match (self, previous) {
            (Self::Refused { code: a, .. }, Some(Self::Refused { code: b, .. })) => a != b,
            (Self::Misconfigured(a), Some(Self::Misconfigured(b))) => a != b,
            (Self::Failing { code: a, .. }, Some(Self::Failing { code: b, .. })) => a != b,
            _ => true,
        }
    }

    /// Logs this failure: once loudly when `new`, else at debug.
    pub fn log(&self, server: &str, failures: u32, new: bool) {
        match (self, new) {
            (Self::Misconfigured(m), true) => tracing::error!(
                server,
                variable = m.variable,
                "TLS misconfiguration: {}; retrying with backoff",
                m.message
            ),
            (Self::Refused { code, message }, true) => tracing::error!(
                server,
                ?code,
                message,
                "the server refused this client's credentials (check {ENV_CLIENT_TOKEN}); retrying with backoff"
            ),
            (Self::Failing { code, message }, true) => tracing::warn!(
                server,
                ?code,
                message,
                "cannot subscribe; retrying with backoff"
            ),
            (Self::Misconfigured(m), false) => {
                tracing::debug!(failures, variable = m.variable, "subscribe attempt failed")
            }
            (Self::Refused { code, .. } | Self::Failing { code, .. }, false) => {
                tracing::debug!(failures, ?code, "subscribe attempt failed")
            }
        }
    }

    /// One line for an HTTP caller: what is wrong and what to do.
    pub fn reason(&self) -> String {
        match self {
            Self::Refused { code, message } => {
                format!("the server refused this client's credentials ({code:?}: {message})")
            }
            Self::Misconfigured(m) => m.message.clone(),
            Self::Failing { code, message } => {
                format!("the last attempt failed ({code:?}: {message})")
            }
        }
    }
}
