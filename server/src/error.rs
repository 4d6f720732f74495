//! The gRPC boundary's error type and its one conversion into `Status`.

use crate::hub::{Disconnect, ShuttingDown, SubscribeError};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("`{field}` is {len} bytes; the limit is {max} bytes ({env})")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
        env: &'static str,
    },
    #[error(
        "subscriber fell behind: its queue of {capacity} messages was full; \
         read the stream faster and resubscribe with `messenger-since` to replay the gap from history"
    )]
    FellBehind { capacity: usize },
    #[error("server shutting down")]
    ShuttingDown,
    #[error(
        "the server already has its maximum of {max} subscribers ({}); \
         retry later or raise the limit",
        crate::config::ENV_MAX_SUBSCRIBERS
    )]
    TooManySubscribers { max: usize },
    #[error("this bearer token may not post as the given author; post as the token's own author")]
    NotTokenAuthor,
    #[error("the bearer token was revoked")]
    TokenRevoked,
    #[error(
        "metadata `{header}` must be `<epoch>:<offset>`: the `messenger-epoch` response \
         header of an earlier ReadMessages and a decimal offset (0: from the oldest held); got {got}"
    )]
    BadSince { header: &'static str, got: String },
}

impl From<ShuttingDown> for ServiceError {
    fn from(_: ShuttingDown) -> Self {
        Self::ShuttingDown
    }
}

impl From<SubscribeError> for ServiceError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::ShuttingDown(_) => Self::ShuttingDown,
            SubscribeError::Full { max } => Self::TooManySubscribers { max },
        }
    }
}

impl ServiceError {
    pub fn from_disconnect(d: Disconnect, capacity: usize) -> Self {
        match d {
            Disconnect::Slow => Self::FellBehind { capacity },
            Disconnect::Shutdown => Self::ShuttingDown,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::FieldTooLong { .. } | ServiceError::BadSince { .. } => {
                Status::invalid_argument(msg)
            }
            ServiceError::FellBehind { .. } | ServiceError::TooManySubscribers { .. } => {
                Status::resource_exhausted(msg)
            }
            ServiceError::ShuttingDown => Status::unavailable(msg),
            ServiceError::NotTokenAuthor | ServiceError::TokenRevoked => {
                Status::permission_denied(msg)
            }
        }
    }
}
