//! The hand-written encoding against the SDK's own conversion: every field
//! of every kind of span, attribute, event and link decodes to the same
//! `ExportTraceServiceRequest`.

use super::request;
use crate::telemetry::finished::{ChildSpan, Finished, scope};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn context(trace: u128, span: u64, remote: bool, state: &str) -> SpanContext {
    let state = TraceState::from_key_value(
        state
            .split(',')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('=')),
    )
    .expect("valid trace state");
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        state,
    )
}

fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("s", "text"),
        KeyValue::new("empty", ""),
        KeyValue::new("owned", String::from("owned")),
        KeyValue::new("t", true),
        KeyValue::new("f", false),
        KeyValue::new("i", -42i64),
        KeyValue::new("zero", 0i64),
        KeyValue::new("d", 1.5f64),
        KeyValue::new("ab", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ai", Value::Array(Array::I64(vec![1, -2]))),
        KeyValue::new("af", Value::Array(Array::F64(vec![0.25]))),
        KeyValue::new(
            "as",
            Value::Array(Array::String(vec![StringValue::from("x"), "".into()])),
        ),
        KeyValue::new("a0", Value::Array(Array::I64(vec![]))),
    ]
}

fn span(scope: &InstrumentationScope, n: u64) -> SpanData {
    let mut events = SpanEvents::default();
    events.events.push(opentelemetry::trace::Event::new(
        "message accepted",
        at(5),
        vec![KeyValue::new("subscribers", 3i64)],
        1,
    ));
    events.dropped_count = 2;
    let mut links = SpanLinks::default();
    links.links.push(Link::new(
        context(7, 8, true, "k=v"),
        vec![KeyValue::new("l", "x")],
        3,
    ));
    links.dropped_count = 4;
    SpanData {
        span_context: context(0xabc + u128::from(n), 0x10 + n, false, "a=1,b=2"),
        parent_span_id: if n.is_multiple_of(2) {
            SpanId::INVALID
        } else {
            SpanId::from(99)
        },
        parent_span_is_remote: n % 3 == 1,
        span_kind: [
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ][(n % 5) as usize]
            .clone(),
        name: Cow::Owned(format!("span {n}")),
        start_time: at(1_000 + n),
        end_time: at(2_000 + n),
        attributes: every_value(),
        dropped_attributes_count: n as u32,
        events,
        links,
        status: [Status::Unset, Status::Ok, Status::error("it failed")][(n % 3) as usize].clone(),
        instrumentation_scope: scope.clone(),
    }
}

fn bare(scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: context(1, 2, false, ""),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed("deliver"),
        start_time: UNIX_EPOCH,
        end_time: UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

fn sdk(spans: Vec<SpanData>) -> Vec<Finished> {
    spans
        .into_iter()
        .map(|span| Finished::Sdk(Box::new(span)))
        .collect()
}

/// Decodes to what the SDK's conversion builds, and is byte for byte what
/// prost encodes from it (so every length is the shortest varint).
fn same_as_the_sdk(spans: Vec<SpanData>, resource: &Resource) {
    same_as_the_sdk_for(sdk(spans), resource);
}

/// The same, for a batch that may hold our child spans: each is compared
/// with the SDK span it stands for.
fn same_as_the_sdk_for(spans: Vec<Finished>, resource: &Resource) {
    let bytes = request(&spans, resource);
    let ours = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("our bytes decode");
    let spans = spans
        .iter()
        .map(|span| match span {
            Finished::Sdk(span) => (**span).clone(),
            Finished::Child(child) => child.to_span_data(),
        })
        .collect();
    let theirs = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource.into()),
    };
    assert_eq!(ours, theirs);
    assert_eq!(bytes, theirs.encode_to_vec(), "the same bytes as prost's");
}

#[test]
fn every_field_decodes_as_the_sdk_converts_it() {
    let messenger = InstrumentationScope::builder("messenger").build();
    let other = InstrumentationScope::builder("other")
        .with_version("1.2")
        .with_schema_url("https://opentelemetry.io/schemas/1.21.0")
        .with_attributes([KeyValue::new("scope.attr", 7i64)])
        .build();
    let resource = Resource::builder_empty()
        .with_service_name("messenger-server")
        .with_attributes([KeyValue::new("host.arch", "x86_64")])
        .with_schema_url([], "https://opentelemetry.io/schemas/1.21.0")
        .build();
    let spans = vec![
        span(&messenger, 0),
        span(&other, 1),
        bare(&messenger),
        span(&messenger, 2),
        span(&other, 3),
        span(&messenger, 4),
    ];
    same_as_the_sdk(spans, &resource);
}

#[test]
fn an_empty_resource_and_batch_decode_as_the_sdk_converts_them() {
    let resource = Resource::builder_empty().build();
    same_as_the_sdk(Vec::new(), &resource);
    let scope = InstrumentationScope::builder("messenger").build();
    same_as_the_sdk(vec![bare(&scope)], &resource);
}

#[test]
fn a_long_message_gets_a_multi_byte_length() {
    let scope = InstrumentationScope::builder("messenger").build();
    let mut long = bare(&scope);
    long.name = Cow::Owned("n".repeat(20_000));
    let resource = Resource::builder_empty().build();
    same_as_the_sdk(vec![long.clone(), long], &resource);
}

#[test]
fn lengths_around_one_and_two_varint_bytes_are_exact() {
    // A span, its attribute and the attribute's value each cross 127/128 (and
    // the groups 16383/16384) as the text grows: every length stays the
    // shortest varint, as prost writes it.
    let scope = InstrumentationScope::builder("messenger").build();
    let resource = Resource::builder_empty().build();
    for n in (0..300).chain(16_250..16_400) {
        let mut span = bare(&scope);
        span.attributes = vec![KeyValue::new("k", "v".repeat(n))];
        same_as_the_sdk(vec![span], &resource);
    }
}

#[test]
fn equal_scopes_that_are_not_clones_share_one_group() {
    // Same content, separately allocated text: one `ScopeSpans`, as the SDK groups them.
    let owned = |name: &str| {
        InstrumentationScope::builder(name.to_owned())
            .with_version(String::from("1"))
            .build()
    };
    let (a, b) = (owned("messenger"), owned("messenger"));
    let resource = Resource::builder_empty().build();
    let spans = vec![bare(&a), bare(&b), bare(&a)];
    let bytes = request(&sdk(spans.clone()), &resource);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded.resource_spans[0].scope_spans.len(), 1);
    same_as_the_sdk(spans, &resource);
}

fn child(parent: SpanContext, n: u64) -> ChildSpan {
    ChildSpan {
        parent,
        span_id: SpanId::from(0x500 + n),
        name: "deliver",
        start: at(10 + n),
        end: at(20 + n),
        attributes: [
            KeyValue::new("messenger.subscriber_id", n as i64),
            KeyValue::new("messenger.delivery_latency_seconds", 0.25 * n as f64),
        ],
    }
}

#[test]
fn a_child_span_encodes_as_the_sdk_span_it_stands_for() {
    // Mixed with SDK spans of our scope (one group) and of another one.
    let ours = scope();
    let other = InstrumentationScope::builder("other").build();
    let resource = Resource::builder_empty()
        .with_service_name("messenger-server")
        .build();
    let stateless = context(0xfeed, 0x77, false, "");
    let stateful = context(0xbeef, 0x78, false, "vendor=x,k=v");
    let spans = vec![
        Finished::Child(child(stateless.clone(), 0)),
        Finished::Sdk(Box::new(span(&ours, 1))),
        Finished::Child(child(stateful, 1)),
        Finished::Sdk(Box::new(span(&other, 2))),
        Finished::Child(child(stateless, 2)),
    ];
    let bytes = request(&spans, &resource);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(
        decoded.resource_spans[0].scope_spans.len(),
        2,
        "ours, other"
    );
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 4);
    same_as_the_sdk_for(spans, &resource);
}
