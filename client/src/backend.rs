//! The only module that sees proto types: the gRPC channel to the server,
//! `SendMessage` with a deadline, and the `ReadMessages` subscriber loop.
//!
//! The subscriber keeps one stream open. It publishes "subscribed" on a watch
//! channel once the response headers arrive (the server has registered it),
//! and "not subscribed" as soon as the stream breaks. Between attempts it waits
//! a capped, jittered exponential backoff. Messages go to the [`Buffer`] in
//! stream order. It asks the server for each message's `traceparent` and
//! records a CONSUMER `receive` span under it when the message is buffered.
//!
//! With TLS files the channel speaks TLS; with a token, both RPCs carry
//! `authorization: Bearer <token>` as sensitive metadata, which nothing here
//! logs. A subscribe refused for the token is logged as such (once per change
//! of status code) and retried with the same backoff as any other failure.

use crate::buffer::{Buffer, BufferedMessage};
use crate::metrics::{self, Metrics};
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_proto::pb::{SendMessageRequest, ServerMessageResponse};
use messenger_proto::time::{format_rfc3339, from_timestamp, unix_nanos_now};
use messenger_proto::{SERVICE_NAME, TRACE_CONTEXT_METADATA};
use messenger_runtime::telemetry::{context_from_traceparent, inject_metadata};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::ClientTlsConfig;
use tonic::transport::{Channel, Uri};
use tonic::{Code, Request, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_STREAM_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// Placeholder for a message whose sendTime is missing or invalid (only a
/// non-conforming server sends one); the message is kept, not lost.
const INVALID_SEND_TIME: &str = "1970-01-01T00:00:00.000000000Z";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("messenger server at {addr} is unreachable: {message}")]
    Unavailable { addr: String, message: String },
    #[error("messenger server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("messenger server answered {code:?}: {message}")]
    Rejected { code: Code, message: String },
    #[error("messenger server returned no valid sendTime")]
    BadResponse,
}

/// HTTP/2 keepalive of the channel: a PING every `interval`, also while no
/// call is open, so a dead peer under an idle subscription is noticed within
/// `interval + timeout` and the subscriber reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

/// A cloneable handle to the server.
#[derive(Clone)]
pub struct Backend {
    client: MessengerServerClient<Channel>,
    addr: String,
    send_timeout: Duration,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<AsciiMetadataValue>,
}

impl Backend {
    /// Creates the channel without connecting; calls connect (and reconnect)
    /// on demand. With `tls`, an `http` address is upgraded to `https`.
    pub fn new(
        uri: Uri,
        send_timeout: Duration,
        keepalive: Keepalive,
        tls: Option<ClientTlsConfig>,
        authorization: Option<AsciiMetadataValue>,
    ) -> Result<Self, messenger_runtime::tls::TlsError> {
        let addr = uri
            .authority()
            .map_or_else(|| uri.to_string(), ToString::to_string);
        let uri = match tls {
            Some(_) => messenger_runtime::tls::with_https(&uri),
            None => uri,
        };
        let channel = messenger_runtime::tls::endpoint(uri, tls)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(keepalive.interval)
            .keep_alive_timeout(keepalive.timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        // The server may be configured for texts up to 16 MiB; never refuse its stream.
        let client =
            MessengerServerClient::new(channel).max_decoding_message_size(MAX_STREAM_MESSAGE_BYTES);
        Ok(Self {
            client,
            addr,
            send_timeout,
            authorization,
        })
    }

    /// Adds the bearer token, if any, to an outgoing call.
    fn authorize(&self, metadata: &mut MetadataMap) {
        if let Some(value) = &self.authorization {
            metadata.insert(messenger_proto::AUTHORIZATION_METADATA, value.clone());
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one message; returns its sendTime as RFC 3339 with 9 digits.
    pub async fn send(&self, author: String, text: String) -> Result<String, BackendError> {
        let span = tracing::debug_span!(
            "mes_grpc.MessengerServer/SendMessage",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = SERVICE_NAME,
            rpc.method = "SendMessage",
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty
        );
        let started = Instant::now();
        let result = self.call_send(author, text).instrument(span.clone()).await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(BackendError::Timeout(_)) => Code::DeadlineExceeded,
            Err(BackendError::Unavailable { .. }) => Code::Unavailable,
            Err(BackendError::Rejected { code, .. }) => *code,
            Err(BackendError::BadResponse) => Code::Internal,
        };
        span.record("rpc.grpc.status_code", code as i32);
        if code != Code::Ok {
            span.record("otel.status_code", "ERROR");
        }
        metrics::grpc_handled("SendMessage", code, started.elapsed());
        result
    }

    async fn call_send(&self, author: String, text: String) -> Result<String, BackendError> {
        let mut request = Request::new(SendMessageRequest { author, text });
        request.set_timeout(self.send_timeout);
        inject_metadata(&outgoing_context(), request.metadata_mut());
        self.authorize(request.metadata_mut());
        let mut client = self.client.clone();
        let response = tokio::time::timeout(self.send_timeout, client.send_message(request))
            .await
            .map_err(|_| BackendError::Timeout(self.send_timeout))?
            .map_err(|status| self.classify(status))?;
        let send_time = response.into_inner().send_time;
        send_time
            .as_ref()
            .and_then(format_rfc3339)
            .ok_or(BackendError::BadResponse)
    }

    fn classify(&self, status: Status) -> BackendError {
        let unreachable = status.code() == Code::Unavailable || from_transport(&status);
        match status.code() {
            _ if unreachable => BackendError::Unavailable {
                addr: self.addr.clone(),
                message: status.message().to_owned(),
            },
            Code::DeadlineExceeded => BackendError::Timeout(self.send_timeout),
            code => BackendError::Rejected {
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

/// The context to propagate: our CLIENT span's when we trace, else whatever
/// the HTTP caller sent (kept current by the observe middleware).
fn outgoing_context() -> opentelemetry::Context {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        cx
    } else {
        opentelemetry::Context::current()
    }
}

/// Whether tonic made this status from a connection failure (reset, GOAWAY
/// race, refused) rather than receiving it from the server.
fn from_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>())
}

/// A streamed message as `/getAndFlushMessages` returns it; never fails (a
/// missing or invalid sendTime becomes the epoch, with a warning).
pub fn to_buffered(m: ServerMessageResponse) -> BufferedMessage {
    let send_time = m.send_time.as_ref().and_then(format_rfc3339);
    if send_time.is_none() {
        tracing::warn!("message without a valid sendTime from server; keeping it with the epoch");
    }
    BufferedMessage {
        author: m.author,
        text: m.text,
        send_time: send_time.unwrap_or_else(|| INVALID_SEND_TIME.to_owned()),
    }
}

/// Buffers one streamed message, with its metrics and, when the server sent a
/// traceparent, a CONSUMER `receive` span continuing the sender's trace.
fn receive(m: ServerMessageResponse, buffer: &Buffer, metrics: &Metrics) {
    metrics.received.increment(1);
    if let Some(ts) = &m.send_time {
        let age_nanos = unix_nanos_now() - from_timestamp(ts);
        metrics.end_to_end.record(age_nanos.max(0) as f64 / 1e9);
    }
    if m.traceparent.is_empty() {
        return buffer.push(to_buffered(m));
    }
    let span = tracing::debug_span!("receive", otel.kind = "consumer");
    let _ = span.set_parent(context_from_traceparent(&m.traceparent));
    span.in_scope(|| buffer.push(to_buffered(m)));
}

/// The status of the server's last refusal of this client's credentials
/// (UNAUTHENTICATED or PERMISSION_DENIED), while it is the latest outcome.
pub type Refusal = Option<(Code, String)>;

/// The subscriber loop's inputs.
pub struct Subscriber {
    pub backend: Backend,
    pub buffer: Arc<Buffer>,
    /// True while the stream is open.
    pub subscribed: watch::Sender<bool>,
    /// Set while subscribing fails for the credentials, so that HTTP callers
    /// get 401/403 rather than "retry shortly".
    pub refused: watch::Sender<Refusal>,
    pub max_backoff: Duration,
    pub stop: CancellationToken,
    pub metrics: Metrics,
}

impl Subscriber {
    /// Keeps a `ReadMessages` stream open until `stop`, feeding `buffer`.
    pub async fn run(self) {
        run_subscriber(self).await
    }
}

async fn run_subscriber(sub: Subscriber) {
    let Subscriber {
        backend,
        buffer,
        subscribed,
        refused,
        max_backoff,
        stop,
        metrics,
    } = sub;
    let mut client = backend.client.clone();
    let mut failures: u32 = 0;
    let mut last_failure = Code::Ok;
    let mut connections: u64 = 0;
    loop {
        let mut request = Request::new(());
        request.metadata_mut().insert(
            TRACE_CONTEXT_METADATA,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        backend.authorize(request.metadata_mut());
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            r = client.read_messages(request) => r,
        };
        match attempt {
            Ok(response) => {
                // Gauge first: whoever sees "subscribed" must also see it in /metrics.
                metrics.connected.set(1.0);
                subscribed.send_replace(true);
                refused.send_replace(None);
                if connections > 0 {
                    metrics.reconnects.increment(1);
                }
                connections += 1;
                let opened = Instant::now();
                tracing::info!(server = backend.addr(), "stream connected");
                failures = 0;
                let mut stream = response.into_inner();
                let end = loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => break None,
                        r = stream.message() => r,
                    };
                    match next {
                        Ok(Some(m)) => receive(m, &buffer, &metrics),
                        Ok(None) => break Some(Status::unavailable("server ended the stream")),
                        Err(status) => break Some(status),
                    }
                };
                metrics.connected.set(0.0);
                subscribed.send_replace(false);
                let code = end.as_ref().map_or(Code::Cancelled, Status::code);
                metrics::grpc_handled("ReadMessages", code, opened.elapsed());
                match end {
                    None => return,
                    Some(s) => {
                        tracing::warn!(code = ?s.code(), message = s.message(), "stream lost; resubscribing")
                    }
                }
            }
            Err(status) => {
                metrics::grpc_handled("ReadMessages", status.code(), Duration::ZERO);
                failures = failures.saturating_add(1);
                let changed = failures == 1 || status.code() != last_failure;
                last_failure = status.code();
                let auth = is_credentials_refusal(last_failure);
                refused.send_replace(auth.then(|| (last_failure, status.message().to_owned())));
                log_subscribe_failure(&backend, &status, failures, changed);
            }
        }
        let delay = backoff(failures, max_backoff);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// The server refused this client's token (or its lack of one).
fn is_credentials_refusal(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

/// Logs a refused subscribe: loudly when its status code is new, at debug
/// level while it repeats.
fn log_subscribe_failure(backend: &Backend, status: &Status, failures: u32, changed: bool) {
    let code = status.code();
    match (changed, is_credentials_refusal(code)) {
        (true, true) => tracing::error!(
            server = backend.addr(),
            ?code,
            message = status.message(),
            "the server refused this client's credentials (check MESSENGER_CLIENT_TOKEN); retrying with backoff"
        ),
        (true, false) => tracing::warn!(
            server = backend.addr(),
            ?code,
            message = status.message(),
            "cannot subscribe; retrying with backoff"
        ),
        (false, _) => tracing::debug!(failures, ?code, "subscribe attempt failed"),
    }
}

/// Equal-jitter exponential backoff: half the capped exponential delay, plus
/// a random part up to the other half.
fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = INITIAL_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_millis(1000);
        for failures in 0..40 {
            let d = backoff(failures, max);
            assert!(d <= max, "{d:?}");
            let exp = INITIAL_BACKOFF
                .saturating_mul(1u32 << failures.min(16))
                .min(max);
            assert!(d >= exp / 2, "{d:?} < half of {exp:?}");
        }
    }
}
