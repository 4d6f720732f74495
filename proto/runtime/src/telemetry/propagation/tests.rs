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
