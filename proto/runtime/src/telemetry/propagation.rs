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
use std::collections::HashMap;
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
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    remember_caller(W3cPropagator.extract_with_context(&Context::new(), &carrier))
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
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn trace_id(cx: &Context) -> TraceId {
        cx.span().span_context().trace_id()
    }

    #[test]
    fn traceparent_round_trips() {
        let cx = context_from_traceparent(PARENT);
        let span = cx.span();
        assert!(span.span_context().is_remote());
        assert!(span.span_context().is_sampled());
        assert_eq!(
            trace_id(&cx),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(traceparent(&cx).as_deref(), Some(PARENT));
    }

    #[test]
    fn invalid_traceparent_gives_no_span() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-1-0c1d2e3f4a5b6c7d-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        ] {
            let cx = context_from_traceparent(bad);
            assert!(!cx.has_active_span(), "{bad:?}");
            assert_eq!(traceparent(&cx), None, "{bad:?}");
        }
    }

    #[test]
    fn metadata_round_trips() {
        let mut metadata = MetadataMap::new();
        inject_metadata(&context_from_traceparent(PARENT), &mut metadata);
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), PARENT);
        let cx = extract_metadata(&metadata);
        assert_eq!(traceparent(&cx).as_deref(), Some(PARENT));
    }

    #[test]
    fn nothing_is_injected_without_a_span() {
        let mut metadata = MetadataMap::new();
        inject_metadata(&Context::new(), &mut metadata);
        assert!(metadata.is_empty());
        assert!(!extract_metadata(&metadata).has_active_span());
    }

    #[test]
    fn http_headers_give_the_remote_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        headers.insert("tracestate", "vendor=value".parse().unwrap());
        let cx = extract_http(&headers);
        assert_eq!(
            trace_id(&cx),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            cx.span().span_context().trace_state().header(),
            "vendor=value"
        );
    }

    #[test]
    fn http_lines_are_all_read() {
        let mut headers = http::HeaderMap::new();
        headers.append("traceparent", PARENT.parse().unwrap());
        headers.append("tracestate", "a=1,b=2".parse().unwrap());
        headers.append("tracestate", "c=3".parse().unwrap());
        let cx = extract_http(&headers);
        assert_eq!(
            cx.span().span_context().trace_state().header(),
            "a=1,b=2,c=3"
        );
        let mut metadata = MetadataMap::new();
        inject_metadata(&cx, &mut metadata);
        assert_eq!(metadata.get("tracestate").unwrap(), "a=1,b=2,c=3");
        // A second traceparent line makes the parent ambiguous: ignored.
        headers.append("traceparent", PARENT.parse().unwrap());
        assert!(!extract_http(&headers).has_active_span());
    }

    #[test]
    fn a_non_ascii_traceparent_line_is_invalid() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            "traceparent",
            http::HeaderValue::from_bytes("00-\u{e9}".as_bytes()).unwrap(),
        );
        assert!(!extract_http(&headers).has_active_span());
    }

    #[test]
    fn metadata_is_read_strictly_and_written_bounded() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "00-1-0c1d2e3f4a5b6c7d-01".parse().unwrap());
        assert!(!extract_metadata(&metadata).has_active_span());
        let big: Vec<String> = (0..32)
            .map(|i| format!("k{i:03}{}={}", "x".repeat(252), "v".repeat(256)))
            .collect();
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", PARENT.parse().unwrap());
        metadata.insert(
            "tracestate",
            format!("a=1,{}", big.join(",")).parse().unwrap(),
        );
        let cx = extract_metadata(&metadata);
        let mut out = MetadataMap::new();
        inject_metadata(&cx, &mut out);
        assert_eq!(out.get("traceparent").unwrap(), PARENT);
        assert_eq!(out.get("tracestate").unwrap(), "a=1");
    }

    #[test]
    fn outgoing_forwards_the_caller_unless_our_span_is_sampled() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
        let ours = |flags: u8| {
            let (trace, span) = (TraceId::from(7u128), SpanId::from(9u64));
            SpanContext::new(trace, span, TraceFlags::new(flags), false, TraceState::NONE)
        };
        for caller in [PARENT.to_owned(), PARENT.replace("-01", "-00")] {
            let incoming = context_from_traceparent(&caller);
            // Nothing of ours: the caller, unchanged.
            assert_eq!(
                traceparent(&outgoing(&incoming)).as_deref(),
                Some(caller.as_str())
            );
            // A span of ours made under it: ours if sampled, else the caller.
            let sampled = incoming.with_remote_span_context(ours(1));
            assert_eq!(traceparent(&outgoing(&sampled)), traceparent(&sampled));
            let unsampled = incoming.with_remote_span_context(ours(0));
            assert_eq!(
                traceparent(&outgoing(&unsampled)).as_deref(),
                Some(caller.as_str())
            );
        }
        // No caller: whatever we have.
        let lone = Context::new().with_remote_span_context(ours(0));
        assert_eq!(traceparent(&outgoing(&lone)), traceparent(&lone));
        assert_eq!(traceparent(&outgoing(&Context::new())), None);
    }
}
