//! Per-request HTTP telemetry: a SERVER span continuing the caller's W3C
//! trace, `http_server_*` metrics labelled by the matched route and a known
//! method (bounded cardinality: any other method is `_OTHER`, as OpenTelemetry
//! names it, so a caller inventing methods cannot grow the series without bound),
//! and one debug log line per request inside the span.

use crate::metrics::{UNMATCHED_ROUTE, http_request};
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use messenger_runtime::telemetry::extract_http;
use opentelemetry::trace::FutureExt;
use std::time::Instant;
use tracing::Instrument;
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

pub async fn observe(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = matched
        .as_ref()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let span = tracing::debug_span!("HTTP request",
        otel.name = %format_args!("{method} {route}"), otel.kind = "server",
        http.request.method = %method, http.route = %route,
        http.response.status_code = tracing::field::Empty, otel.status_code = tracing::field::Empty);
    // A missing or malformed traceparent just starts a new trace.
    let parent = extract_http(request.headers());
    let _ = span.set_parent(parent.clone());
    let started = Instant::now();
    // The caller's context also rides along as the current OpenTelemetry
    // context, so it still reaches the server when this client exports nothing.
    // It wraps the span (outermost), so the span's own context wins when it has one.
    let response = next
        .run(request)
        .instrument(span.clone())
        .with_context(parent)
        .await;
    let elapsed = started.elapsed();
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
    response
}
