//! The errors of assembling and serving the server: [`AppError`] for
//! everything `bind` and `run_until_stopped` can fail with, and its
//! [`ConfigError`] part, the one `main` turns into a usage error (exit 2).

use crate::grpc::auth::AuthError;
use messenger_runtime::tls::TlsError;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("building reflection service: {0}")]
    Reflection(#[from] crate::grpc::reflection::index::IndexError),
    #[error("cannot install the SIGHUP handler for token reload: {0}")]
    Signal(std::io::Error),
    #[error("cannot install the SIGUSR2 handler for the debug dump: {0}")]
    DebugSignal(std::io::Error),
}

/// A config file that cannot be used (missing, unreadable, not PEM, a key
/// that does not fit its certificate, a bad tokens line). Its message names
/// the file and its variable; `main` prints it as a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Broker(#[from] crate::core::broker::BrokerConfigError),
    #[error(transparent)]
    State(#[from] crate::core::history::state::StateError),
}
