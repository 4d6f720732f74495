//! Per-request HTTP telemetry: a SERVER span continuing the caller's W3C
//! trace, `http_server_*` metrics labelled by the matched route and a known
//! method (bounded cardinality: any other method is `_OTHER`, as OpenTelemetry
//! names it, so a caller inventing methods cannot grow the series without bound),
//! and one debug log line per request inside the span ([`ObserveLayer`]).

use crate::metrics::{UNMATCHED_ROUTE, http_request};
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use messenger_runtime::telemetry::extract_http;
use opentelemetry::trace::FutureExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `method` label: a standard method's name, else `_OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("_OTHER")
}

/// Wraps a route in [`Observe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

/// See the module docs. A plain tower service: one allocation per request
/// (its future), where `axum::middleware::from_fn` also boxed and cloned the
/// inner service and ran extractors.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = method_label(request.method());
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let span = {
            let route = matched
                .as_ref()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            tracing::debug_span!("HTTP request",
                otel.name = %format_args!("{method} {route}"), otel.kind = "server",
                http.request.method = %method, http.route = %route,
                http.response.status_code = tracing::field::Empty, otel.status_code = tracing::field::Empty)
        };
        // A missing or malformed traceparent just starts a new trace.
        let parent = extract_http(request.headers());
        let _ = span.set_parent(parent.clone());
        let started = Instant::now();
        // The caller's context also rides along as the current OpenTelemetry
        // context, so it still reaches the server when this client exports nothing.
        // It wraps the span (outermost), so the span's own context wins when it has one.
        let response = self
            .inner
            .call(request)
            .instrument(span.clone())
            .with_context(parent);
        Box::pin(async move {
            let Ok(response) = response.await;
            let route = matched
                .as_ref()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            finished(&span, method, route, &response, started.elapsed());
            Ok(response)
        })
    }
}

/// Records the outcome on the span, in the metrics and in one debug line.
fn finished(span: &Span, method: &str, route: &str, response: &Response, elapsed: Duration) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    http_request(method, route, status, elapsed);
    // Inside the span, so the line carries its trace and span ids.
    span.in_scope(|| {
        tracing::debug!(
            status,
            latency_us = elapsed.as_micros() as u64,
            "request finished"
        )
    });
}
