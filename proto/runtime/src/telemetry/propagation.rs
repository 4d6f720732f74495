//! W3C trace-context propagation over HTTP headers and gRPC metadata.
//!
//! Header and metadata helpers go through the global propagator (installed by
//! `init`/`init_logging`); the `traceparent` string helpers always speak W3C.
//! Extraction never inherits the caller's current context: no or invalid
//! headers give a context without a span, so a request is never parented to
//! whatever span happens to be active.

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector, TextMapPropagator as _},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};

const TRACEPARENT: &str = "traceparent";

/// The remote parent carried by an HTTP request's headers.
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| {
        propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers))
    })
}

/// Writes `cx`'s span into outgoing gRPC metadata (nothing if it has none).
pub fn inject_metadata(cx: &Context, metadata: &mut MetadataMap) {
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(cx, &mut MetadataInjector(metadata));
    });
}

/// The remote parent carried by incoming gRPC metadata.
pub fn extract_metadata(metadata: &MetadataMap) -> Context {
    global::get_text_map_propagator(|propagator| {
        propagator.extract_with_context(&Context::new(), &MetadataExtractor(metadata))
    })
}

/// The W3C `traceparent` of `cx`'s span, `None` if it has no valid span context.
pub fn traceparent(cx: &Context) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// A context whose remote parent is `traceparent`; invalid input gives a
/// context without a span.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier)
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
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
    use opentelemetry::trace::{TraceContextExt as _, TraceId};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn trace_id(cx: &Context) -> TraceId {
        cx.span().span_context().trace_id()
    }

    fn with_w3c() {
        global::set_text_map_propagator(TraceContextPropagator::new());
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
        ] {
            let cx = context_from_traceparent(bad);
            assert!(!cx.has_active_span(), "{bad:?}");
            assert_eq!(traceparent(&cx), None, "{bad:?}");
        }
    }

    #[test]
    fn metadata_round_trips() {
        with_w3c();
        let mut metadata = MetadataMap::new();
        inject_metadata(&context_from_traceparent(PARENT), &mut metadata);
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), PARENT);
        let cx = extract_metadata(&metadata);
        assert_eq!(traceparent(&cx).as_deref(), Some(PARENT));
    }

    #[test]
    fn nothing_is_injected_without_a_span() {
        with_w3c();
        let mut metadata = MetadataMap::new();
        inject_metadata(&Context::new(), &mut metadata);
        assert!(metadata.is_empty());
        assert!(!extract_metadata(&metadata).has_active_span());
    }

    #[test]
    fn http_headers_give_the_remote_parent() {
        with_w3c();
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
}
