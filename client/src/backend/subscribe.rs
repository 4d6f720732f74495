//! The subscription loop: keeps one `ReadMessages` stream open until stopped.
//!
//! Invariants:
//! - `subscribed` is true exactly while a stream is open and live: it turns
//!   true once the response headers arrive (the server has registered this
//!   subscriber, proto/CONTRACT.md) or, after a resume, once the replay is buffered
//!   ([`super::resume`]), and false as soon as the stream breaks. The
//!   `messenger_client_stream_connected` gauge is set before it, so whoever
//!   sees "subscribed" also sees it in `/metrics`.
//! - `down` holds why the last attempt failed ([`Down`]: refused
//!   credentials, so HTTP callers get 401/403; a TLS misconfiguration; a
//!   passing failure) while it is the latest outcome; an open stream clears it.
//! - Between failed attempts it waits a capped, jittered exponential backoff
//!   (never a busy loop), and every failure, credentials and TLS included,
//!   is retried. A failure is logged loudly when it is new (a TLS or
//!   credentials misconfiguration, or a peer that is not gRPC, at ERROR,
//!   naming the variable to fix), at debug level while it repeats, and
//!   loudly again once per `retry_log_interval` ([`Down::log`], [`Reports`]).
//! - Messages reach the buffer in stream order ([`super::receive`]), none
//!   twice; each request asks the server for the messages' `traceparent` and
//!   offsets, and every re-subscription resumes from the last one buffered.

use super::Backend;
use super::receive::receive;
use super::resume::{Headers, Received, Resumer};
use crate::buffer::Buffer;
use crate::failure::{Down, NOT_GRPC_RESPONSE, Reports};
use crate::metrics::{self, Metrics};
use messenger_proto::TRACE_CONTEXT_METADATA;
use messenger_proto::pb::ServerMessageResponse;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status, Streaming};

const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// The subscriber loop's inputs.
pub struct Subscriber {
    pub backend: Backend,
    pub buffer: Arc<Buffer>,
    /// True while the stream is open.
    pub subscribed: watch::Sender<bool>,
    /// Why subscribing fails, while it does: HTTP callers get 401/403 for
    /// refused credentials, and `/readyz` says why it is not ready.
    pub down: watch::Sender<Option<Down>>,
    pub max_backoff: Duration,
    /// How often a failure that keeps repeating is logged again.
    pub retry_log_interval: Duration,
    pub stop: CancellationToken,
    pub metrics: Metrics,
}

impl Subscriber {
    /// Keeps a `ReadMessages` stream open until `stop`, feeding `buffer`.
    pub async fn run(self) {
        let mut client = self.backend.client.clone();
        let mut failures: u32 = 0;
        let mut connections: u64 = 0;
        let mut resumer = Resumer::new(self.metrics.clone());
        let mut reports = Reports::new(self.retry_log_interval);
        loop {
            let mut request = Request::new(());
            resumer.request_metadata(request.metadata_mut());
            request
                .metadata_mut()
                .insert(TRACE_CONTEXT_METADATA, MetadataValue::from_static("1"));
            self.backend.authorize(request.metadata_mut());
            let attempt = tokio::select! {
                () = self.stop.cancelled() => return,
                r = client.read_messages(request) => r.and_then(grpc_only),
            };
            match attempt {
                Ok(response) => {
                    let reconnect = connections > 0;
                    connections += 1;
                    failures = 0;
                    reports.recovered();
                    let live = match resumer.on_headers(response.metadata()) {
                        // A new epoch: re-subscribe now, from its start.
                        Headers::Again => continue,
                        headers => headers == Headers::Live,
                    };
                    let consumed =
                        self.consume(response.into_inner(), reconnect, live, &mut resumer);
                    let Some(end) = consumed.await else {
                        return;
                    };
                    // A stream ended by a refusal (the token revoked) is down
                    // for that reason from now on: `/sendMessage` says 401/403
                    // with it, not "reconnecting", while the retry is refused.
                    if let failure @ Down::Refused { .. } = Down::of(&end) {
                        self.down.send_replace(Some(failure));
                    }
                }
                Err(status) => {
                    metrics::grpc_handled("ReadMessages", status.code(), Duration::ZERO);
                    failures = failures.saturating_add(1);
                    let failure = Down::of(&status);
                    let report = reports.failed(&failure, Instant::now());
                    failure.log(self.backend.addr(), failures, report);
                    self.down.send_replace(Some(failure));
                }
            }
            let delay = backoff(failures, self.max_backoff);
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Feeds `buffer` from an open stream, publishing "subscribed" while it
    /// is live (from the start, or once a replay is buffered). Returns how it
    /// ended: `None` when stopped, else the status.
    async fn consume(
        &self,
        mut stream: Streaming<ServerMessageResponse>,
        reconnect: bool,
        live: bool,
        resumer: &mut Resumer,
    ) -> Option<Status> {
        if live {
            self.set_live();
        }
        self.down.send_replace(None);
        if reconnect {
            self.metrics.reconnects.increment(1);
        }
        let opened = Instant::now();
        tracing::info!(server = self.backend.addr(), "stream connected");
        let end = loop {
            let next = tokio::select! {
                () = self.stop.cancelled() => break None,
                r = stream.message() => r,
            };
            match next {
                Ok(Some(m)) => match resumer.on_message(m.offset) {
                    Received::Duplicate => {}
                    Received::Keep { replayed, now_live } => {
                        receive(m, &self.buffer, &self.metrics, replayed);
                        if now_live {
                            self.set_live();
                        }
                    }
                },
                Ok(None) => break Some(Status::unavailable("server ended the stream")),
                Err(status) => break Some(status),
            }
        };
        self.metrics.connected.set(0.0);
        self.subscribed.send_replace(false);
        let code = end.as_ref().map_or(Code::Cancelled, Status::code);
        metrics::grpc_handled("ReadMessages", code, opened.elapsed());
        match &end {
            Some(s) if resumer.on_end(s) => tracing::info!(
                message = s.message(),
                "server drained the stream to this client's position; resubscribing"
            ),
            Some(s) => {
                tracing::warn!(code = ?s.code(), message = s.message(), "stream lost; resubscribing")
            }
            None => {}
        }
        end
    }
}

impl Subscriber {
    /// Gauge first: whoever sees "subscribed" must also see it in /metrics.
    fn set_live(&self) {
        self.metrics.connected.set(1.0);
        self.subscribed.send_replace(true);
    }
}

/// `response` if its headers are gRPC's; an HTTP server that is not gRPC
/// (e.g. a `/metrics` port) answers headers too, and only its first message
/// would tell. Refused as [`NOT_GRPC_RESPONSE`], which [`Down`] names.
fn grpc_only<T>(response: tonic::Response<T>) -> Result<tonic::Response<T>, Status> {
    let content_type = response.metadata().get("content-type");
    let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("none");
    if content_type.starts_with("application/grpc") {
        Ok(response)
    } else {
        Err(Status::unknown(format!(
            "{NOT_GRPC_RESPONSE} (content-type {content_type})"
        )))
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
