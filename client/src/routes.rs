//! HTTP routes: JSON in, calls to the [`Backend`] and [`Buffer`], JSON out.
//! Every failure is an [`ApiError`]; nothing here panics on input. Each
//! handler's `#[utoipa::path]` is its entry in `/openapi.json`
//! (`crate::openapi`); the router that serves them is [`crate::api`].
//!
//! [`Backend`]: crate::backend::Backend

use crate::backend::{BackendError, MessageSender};
use crate::buffer::{Buffer, BufferedMessage};
use crate::error::{ApiError, ErrorBody};
use crate::limits::{Admitted, InFlight};
use crate::origin::SameOrigin;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use messenger_runtime::metrics::Exporter;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest `/sendMessage` waits for its own message to reach the buffer.
pub const OWN_COPY_WAIT: Duration = Duration::from_secs(1);

/// Everything the handlers read. Tests build it around an in-memory
/// [`MessageSender`], so [`router`](crate::api::router) is exercised without a socket.
/// The router holds it as one `Arc<AppState>`: axum clones the state into
/// every request's handler service, and one reference count is all that
/// clone then costs (a field-by-field clone was about 13% of the client's
/// CPU under `POST /sendMessage` load).
#[derive(Clone)]
pub struct AppState {
    /// The server's `SendMessage` (the tonic [`crate::backend::Backend`] in production).
    pub backend: Arc<dyn MessageSender>,
    pub buffer: Arc<Buffer>,
    /// True while the `ReadMessages` stream is open.
    pub subscribed: watch::Receiver<bool>,
    /// Why subscribing fails, while it does.
    pub down: watch::Receiver<Option<crate::failure::Down>>,
    pub max_body_bytes: usize,
    pub exporter: Arc<Exporter>,
    /// Deadline of a whole request.
    pub http_timeout: Duration,
    /// The message-route requests in flight, and their cap (shedding past it).
    pub in_flight: InFlight,
    /// The open `/events` streams and their cap.
    pub events: crate::events::EventStreams,
    /// The page at `/`.
    pub page: crate::page::Page,
    /// Host names browsers may use beyond loopback and IP addresses.
    pub allowed_hosts: crate::origin::AllowedHosts,
}

/// `/events` takes only its own part of the state, so `events` does not
/// import this module (no `events` <-> `routes` loop).
impl axum::extract::FromRef<Arc<AppState>> for crate::events::EventStreams {
    fn from_ref(state: &Arc<AppState>) -> Self {
        state.events.clone()
    }
}

impl axum::extract::FromRef<Arc<AppState>> for crate::origin::AllowedHosts {
    fn from_ref(state: &Arc<AppState>) -> Self {
        state.allowed_hosts.clone()
    }
}

impl axum::extract::FromRef<Arc<AppState>> for InFlight {
    fn from_ref(state: &Arc<AppState>) -> Self {
        state.in_flight.clone()
    }
}

/// A message to send to the chat.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SendRequest {
    /// Up to 256 bytes by the server's default limit.
    author: String,
    /// Up to 64 KiB by the server's default limit.
    text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SendResponse {
    /// RFC 3339 UTC, exactly 9 fractional digits, e.g. `2021-09-12T10:25:22.454093428Z`.
    #[serde(rename = "sendTime")]
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")]
    send_time: String,
}

/// `{"status": ...}` of the probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Status {
    status: String,
}

/// The body is read as JSON whatever its Content-Type (`curl -d` sends a form type).
#[utoipa::path(post, path = "/sendMessage", operation_id = "sendMessage", tag = "messages",
    description = "Sends a message to the chat. The body is read as JSON whatever its Content-Type. \
        The returned sendTime is byte-for-byte the one `/getAndFlushMessages` shows later. \
        W3C `traceparent`/`tracestate` headers are optional and never make a send fail: \
        an invalid `traceparent` is ignored (a new trace starts), `tracestate` is cut to 32 members and 512 characters.",
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted by the server", body = SendResponse),
        (status = 400, description = "Not a JSON object with string `author` and `text`, or a field over the server's limit", body = ErrorBody),
        (status = 401, description = "The server wants a token and this client has none or a malformed one (MESSENGER_CLIENT_TOKEN)", body = ErrorBody),
        (status = 403, description = "The server refused this client's token, or the token may not post as this author; or a browser's cross-site request (an Origin other than this client's own)", body = ErrorBody),
        (status = 413, description = "Body larger than MESSENGER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 502, description = "The server failed or answered outside the messenger contract (any other gRPC status, or no valid sendTime)", body = ErrorBody),
        (status = 503, description = "Not subscribed, server unreachable, overloaded, or the call was cancelled; retry", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The server or the request timed out", body = ErrorBody),
    ))]
pub(crate) async fn send_message(
    State(state): State<Arc<AppState>>,
    _same_origin: SameOrigin,
    _admitted: Admitted,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SendResponse>, ApiError> {
    let body = body.map_err(|r| body_rejection(&r, state.max_body_bytes))?;
    let request = parse_send_request(&body)?;
    // A message sent through this client must land in its own buffer, which
    // only holds while the stream is open.
    if !*state.subscribed.borrow() {
        return Err(not_subscribed(&state));
    }
    let send_time = state.backend.send(request.author, request.text).await?;
    // The server queued it to this client's stream before acknowledging;
    // answer once the stream has buffered it, so a flush right after this
    // answer holds it (proto/CONTRACT.md: a message sent through a client always
    // appears in that client's own buffer). Bounded: a stream that broke
    // meanwhile replays it on resume.
    if !state.buffer.wait_pushed(&send_time, OWN_COPY_WAIT).await {
        tracing::debug!(%send_time, "own copy not buffered yet; answering anyway");
    }
    Ok(Json(SendResponse { send_time }))
}

fn body_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(format!(
            "cannot read request body: {}",
            rejection.body_text()
        ))
    }
}

fn parse_send_request(body: &[u8]) -> Result<SendRequest, ApiError> {
    // serde would also accept a JSON array for a struct; the contract wants an object.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::BadRequest("request body is empty".into())),
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::BadRequest(
                "request body is not a JSON object".into(),
            ));
        }
    }
    if let Some(depth) = nesting_over(body, MAX_NESTING) {
        return Err(ApiError::BadRequest(format!(
            "JSON nesting is deeper than {depth} levels"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// Deepest JSON nesting accepted anywhere in a request body.
const MAX_NESTING: usize = 32;

/// `Some(max)` if brackets outside strings nest deeper than `max`.
fn nesting_over(body: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(max);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[utoipa::path(post, path = "/getAndFlushMessages", operation_id = "getAndFlushMessages", tag = "messages",
    description = "Returns every message received since the last call, in stream order \
        (ascending sendTime), and empties the buffer.",
    responses(
        (status = 200, description = "Buffered messages, oldest first", body = Vec<BufferedMessage>),
        (status = 403, description = "A browser's cross-site request (an Origin other than this client's own); the buffer is untouched", body = ErrorBody),
        (status = 413, description = "Body larger than MESSENGER_MAX_BODY_BYTES (the body is otherwise ignored); the buffer is untouched", body = ErrorBody),
        (status = 503, description = "Overloaded; retry", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The request timed out", body = ErrorBody),
    ))]
pub(crate) async fn get_and_flush_messages(
    State(state): State<Arc<AppState>>,
    _same_origin: SameOrigin,
    _admitted: Admitted,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<BufferedMessage>>, ApiError> {
    // Ignored, but read to its end within the same limit as every body: a
    // caller over it learns so before anything is flushed.
    body.map_err(|r| body_rejection(&r, state.max_body_bytes))?;
    Ok(Json(state.buffer.take()))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Status)))]
pub(crate) async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Subscribed to the server's stream", body = Status),
        (status = 503, description = "Not subscribed (reconnecting); the error says why the last attempt failed", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    if *state.subscribed.borrow() {
        Ok(Json(Status {
            status: "ready".into(),
        }))
    } else {
        // Always 503 (not 401/403): readiness, not the caller's credentials.
        let why = state
            .down
            .borrow()
            .as_ref()
            .map(crate::failure::Down::reason);
        Err(ApiError::NotSubscribed(why))
    }
}

/// The error while the stream is down: the server's refusal of the
/// credentials as such (401/403), else 503 saying why.
fn not_subscribed(state: &AppState) -> ApiError {
    use crate::failure::Down;
    match state.down.borrow().clone() {
        Some(Down::Refused { code, message }) => BackendError::Rejected { code, message }.into(),
        other => ApiError::NotSubscribed(other.map(|d| d.reason())),
    }
}

/// A handler panic still answers JSON (and is logged), never an empty 500.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::Internal("the request handler panicked".into()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> String {
    state.exporter.render()
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests;
