//! The HTTP boundary's error type and its one conversion into a response:
//! a status code and `{"error": "<what is wrong and what to do>"}`.

use crate::backend::BackendError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;

pub const EXPECTED_BODY: &str = r#"expected a JSON object {"author": string, "text": string}"#;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}; {EXPECTED_BODY}")]
    BadRequest(String),
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error(
        "no route for {method} {path}; the API is POST /sendMessage, POST /getAndFlushMessages, GET /healthz, GET /readyz"
    )]
    NotFound { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("not subscribed to the messenger server's stream yet (reconnecting); retry shortly")]
    NotSubscribed,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotSubscribed => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend(e) => backend_status(e),
        }
    }
}

fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        BackendError::BadResponse => StatusCode::BAD_GATEWAY,
        BackendError::Rejected { code, .. } => match code {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if matches!(self, Self::Backend(_)) {
            tracing::warn!(status = status.as_u16(), error = %message, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %message, "request rejected");
        }
        (status, Json(json!({ "error": message }))).into_response()
    }
}
