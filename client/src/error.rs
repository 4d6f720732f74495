//! The HTTP boundary's error type and its one conversion into a response:
//! a status code and `{"error": "<what is wrong and what to do>"}` ([`ErrorBody`]).
//! Caller input (a method, a path, a position) is repeated only through
//! [`quote`] (at most 64 characters, escaped, a cut marked with its length).
//! Every 503 carries `Retry-After`, because each one is temporary.

use crate::backend::BackendError;
use crate::config::{
    ENV_HTTP_MAX_CONCURRENCY, ENV_HTTP_TIMEOUT_MS, ENV_MAX_BODY_BYTES, ENV_MAX_EVENT_STREAMS,
};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use messenger_proto::quote::quote;
use serde::Serialize;
use std::time::Duration;
use tonic::Code;

/// Seconds a caller should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong and what to do about it.
    pub error: String,
}

pub const EXPECTED_BODY: &str = r#"expected a JSON object {"author": string, "text": string}"#;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}; {EXPECTED_BODY}")]
    BadRequest(String),
    #[error(
        "request body is larger than the {limit}-byte limit ({env}); send a smaller one, or raise the limit",
        env = ENV_MAX_BODY_BYTES
    )]
    PayloadTooLarge { limit: usize },
    #[error(
        "no route for {} {}; the routes are {}",
        quote(.method),
        quote(.path),
        crate::paths::routes_line()
    )]
    NotFound { method: String, path: String },
    #[error("method {} is not allowed on {}", quote(.method), quote(.path))]
    MethodNotAllowed { method: String, path: String },
    #[error(
        "not subscribed to the messenger server's stream (reconnecting){}; retry shortly",
        .0.as_ref().map(|why| format!(": {why}")).unwrap_or_default()
    )]
    NotSubscribed(Option<String>),
    #[error(
        "too many requests in flight (limit {limit}, {env}); retry shortly",
        env = ENV_HTTP_MAX_CONCURRENCY
    )]
    Overloaded { limit: usize },
    #[error(
        "request did not finish within {0:?} ({env}); a send may or may not have been accepted",
        env = ENV_HTTP_TIMEOUT_MS
    )]
    TimedOut(Duration),
    /// A malformed `Last-Event-ID` or `?since=` on `/events`.
    #[error("{0}")]
    BadPosition(String),
    #[error(
        "too many event streams open (limit {limit}, {env}); retry shortly",
        env = ENV_MAX_EVENT_STREAMS
    )]
    TooManyStreams { limit: usize },
    /// `/events` with `MESSENGER_MAX_EVENT_STREAMS=0`: not temporary, so
    /// no 503 and no `Retry-After`.
    #[error(
        "/events is turned off on this client ({env}=0); a retry cannot succeed: set {env} \
         above 0 to turn it on",
        env = ENV_MAX_EVENT_STREAMS
    )]
    EventsOff,
    /// A browser's cross-site request to a route that changes state ([`crate::origin`]).
    #[error(
        "cross-site request refused: Origin {} does not match this request's Host {}; post from \
         the client's own page, or without an Origin header (curl, scripts)",
        quote(.origin),
        quote(.host)
    )]
    CrossOrigin { origin: String, host: String },
    /// A browser's request naming a host this client does not answer
    /// browsers on ([`crate::origin`], against DNS rebinding).
    #[error(
        "host {} is not one this client answers browsers on (localhost, an IP address, or a \
         name in {env}); add the name to {env} if this page is yours",
        quote(.host),
        env = crate::config::ENV_HTTP_ALLOWED_HOSTS
    )]
    HostNotAllowed { host: String },
    #[error("the client is shutting down; retry on another or after it restarts")]
    ShuttingDown,
    #[error("internal error: {0}; it was logged, please report it")]
    Internal(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::BadPosition(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } | Self::EventsOff => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotSubscribed(_)
            | Self::Overloaded { .. }
            | Self::TooManyStreams { .. }
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::CrossOrigin { .. } | Self::HostNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Backend(e) => backend_status(e),
        }
    }
}

/// Every gRPC status the server (or the channel) can answer with, mapped to
/// one of the statuses `/sendMessage` documents in `/openapi.json`.
fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::Unavailable { .. } | BackendError::ServerUnavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        BackendError::Timeout(_) | BackendError::SubscribeTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        BackendError::BadResponse => StatusCode::BAD_GATEWAY,
        BackendError::Rejected { code, .. } => rejected_status(*code),
    }
}

fn rejected_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        // Shed, cancelled or aborted by the server: worth a retry.
        Code::ResourceExhausted | Code::Unavailable | Code::Cancelled | Code::Aborted => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        // The server failed or does not speak our contract.
        Code::Ok
        | Code::Unknown
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        // A failure of ours or the server's is a warning; the server's
        // refusal of the caller's input (a 4xx: an author over the limit, a
        // refused token) is the caller's, and a line per request would let
        // any caller fill the log.
        let ours = matches!(
            self,
            Self::Backend(_) | Self::TimedOut(_) | Self::Internal(_)
        );
        if ours && status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %message, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %message, "request rejected");
        }
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    /// Every answer caused by one of this client's limits names the variable
    /// that sets it, so the caller knows what an operator can change.
    #[test]
    fn every_limit_error_names_its_variable() {
        use crate::config::{ENV_HTTP_MAX_CONCURRENCY, ENV_HTTP_TIMEOUT_MS, ENV_MAX_BODY_BYTES};
        for (error, variable) in [
            (ApiError::PayloadTooLarge { limit: 1 }, ENV_MAX_BODY_BYTES),
            (ApiError::Overloaded { limit: 1 }, ENV_HTTP_MAX_CONCURRENCY),
            (
                ApiError::TimedOut(Duration::from_secs(1)),
                ENV_HTTP_TIMEOUT_MS,
            ),
        ] {
            assert!(error.to_string().contains(variable), "{error}");
        }
    }

    /// A field report's kind: a 12 KB path came back whole in the 404.
    #[test]
    fn a_long_path_or_method_is_quoted_cut() {
        let path = format!("/{}", "p".repeat(12_000));
        for error in [
            ApiError::NotFound {
                method: "GET".into(),
                path: path.clone(),
            },
            ApiError::MethodNotAllowed {
                method: "M".repeat(12_000),
                path: path.clone(),
            },
        ] {
            let text = error.to_string();
            assert!(text.contains("… (12001 bytes)"), "{text}");
            assert!(text.len() < 600, "{} bytes", text.len());
        }
    }

    /// Whatever the server answers, `/sendMessage` answers a status its
    /// OpenAPI entry documents.
    #[test]
    fn every_upstream_status_is_documented() {
        let doc = crate::openapi::ApiDoc::openapi();
        let send = doc.paths.paths["/sendMessage"]
            .post
            .as_ref()
            .expect("POST /sendMessage");
        let documented = &send.responses.responses;
        let mut errors: Vec<BackendError> = (0..=16)
            .map(|code| BackendError::Rejected {
                code: Code::from_i32(code),
                message: String::new(),
            })
            .collect();
        errors.extend([
            BackendError::Unavailable {
                addr: String::new(),
                message: String::new(),
            },
            BackendError::ServerUnavailable {
                addr: String::new(),
                message: String::new(),
            },
            BackendError::Timeout(Duration::from_secs(1)),
            BackendError::BadResponse,
        ]);
        for error in errors {
            let status = ApiError::Backend(error).status();
            assert!(
                documented.contains_key(status.as_str()),
                "{status} is not documented for /sendMessage"
            );
        }
    }
}
