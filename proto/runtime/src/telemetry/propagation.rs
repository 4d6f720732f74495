//! W3C trace-context propagation over HTTP headers and gRPC metadata, always
//! through our strict [`W3cPropagator`] (never the SDK's).
//!
//! Extraction never inherits the caller's current context: no or invalid
//! headers give a context without a span, so a request is never parented to
//! whatever span happens to be active. Every header line is seen (a repeated
//! `traceparent` is invalid; `tracestate` lines are combined).
//!
//! What a process passes on is decided by [`outgoing`]: our own span when it
//! is sampled (we participate), otherwise the caller's context unchanged,
//! sampled flag and `tracestate` included (we forward). So a process that
//! exports nothing, or a request whose caller did not sample, still carries
//! the caller's trace to everything it causes. To make that possible, every
//! extracted context also remembers the caller's span context as a context
//! value, which spans made under it (and their children) inherit.

use super::w3c::{TRACEPARENT, TraceParent, W3cPropagator};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{SpanContext, TraceContextExt as _},
};
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};

/// The remote parent carried by an HTTP request's headers.
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    remember_caller(W3cPropagator.extract_with_context(&Context::new(), &HeaderExtractor(headers)))
}

/// Writes `cx`'s span into outgoing gRPC metadata (nothing if it has none;
/// `tracestate` only when non-empty, at most 512 characters).
pub fn inject_metadata(cx: &Context, metadata: &mut MetadataMap) {
    W3cPropagator.inject_context(cx, &mut MetadataInjector(metadata));
}

/// The remote parent carried by incoming gRPC metadata.
pub fn extract_metadata(metadata: &MetadataMap) -> Context {
    remember_caller(
        W3cPropagator.extract_with_context(&Context::new(), &MetadataExtractor(metadata)),
    )
}

/// The W3C `traceparent` of `cx`'s span, `None` if it has no valid span context.
pub fn traceparent(cx: &Context) -> Option<String> {
    TraceParent::of(cx).map(|parent| parent.to_string())
}

/// A context whose remote parent is `traceparent`, parsed strictly; invalid
/// input gives a context without a span.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    remember_caller(
        W3cPropagator.extract_with_context(&Context::new(), &TraceParentOnly(traceparent)),
    )
}

/// A carrier holding one `traceparent` value and nothing else. It borrows
/// the value: a map as carrier cost two copies and a lower-cased key per
/// lookup, for every streamed message the client receives.
struct TraceParentOnly<'a>(&'a str);

impl Extractor for TraceParentOnly<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The caller's span context, kept as a value of every context made from
/// an extracted one.
#[derive(Debug, Clone)]
struct Caller(SpanContext);

fn remember_caller(cx: Context) -> Context {
    let span = cx.span();
    let parent = span.span_context();
    if !parent.is_valid() {
        return cx.clone();
    }
    cx.with_value(Caller(parent.clone()))
}

/// The context to pass on from `cx`: `cx` itself when its span is ours and
/// sampled (we participate), else the caller's context it was made from,
/// unchanged, else `cx`. (Spec: a vendor that does not record forwards
/// `traceparent` and `tracestate` unmodified.)
pub fn outgoing(cx: &Context) -> Context {
    let span = cx.span();
    let own = span.span_context();
    if own.is_sampled() && !own.is_remote() {
        return cx.clone();
    }
    match cx.get::<Caller>() {
        Some(Caller(caller)) => Context::new().with_remote_span_context(caller.clone()),
        None => cx.clone(),
    }
}

/// [`outgoing`] of the current `tracing` span's context, or, when this
/// process records nothing (the span has no OpenTelemetry context), of the
/// current OpenTelemetry context (where request handling keeps the caller's).
pub fn outgoing_current() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let own = tracing::Span::current().context();
    if own.span().span_context().is_valid() {
        outgoing(&own)
    } else {
        outgoing(&Context::current())
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    /// Every line, in order; a line that is not visible ASCII reads as empty
    /// (an invalid `traceparent`, a `tracestate` line without members).
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let lines: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .map(|value| value.to_str().unwrap_or_default())
            .collect();
        (!lines.is_empty()).then_some(lines)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    /// Every entry, in order, as for HTTP headers.
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let lines: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .map(|value| value.to_str().unwrap_or_default())
            .collect();
        (!lines.is_empty()).then_some(lines)
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|key| match key {
                KeyRef::Ascii(key) => key.as_str(),
                KeyRef::Binary(key) => key.as_str(),
            })
            .collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    /// Drops what is not valid ASCII metadata rather than failing the call;
    /// W3C headers always are.
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests;
