//! OTLP protobuf of a batch of finished spans, written straight from the
//! SDK's [`SpanData`] and from our [`ChildSpan`]s into one buffer.
//!
//! `opentelemetry-otlp` clones the batch, converts every span into the
//! generated `opentelemetry-proto` structs (a `String` or `Vec` per id, name,
//! key and value, a hash of the instrumentation scope per span), encodes
//! those and drops them: most of a sampled message's tracing cost in the
//! server (issue 28's profile). This writes the same bytes with no per-span
//! allocation: each nested message is written in place and its length put
//! in front of it afterwards (one byte is kept for it, so only a message of
//! 128 bytes or more moves).
//!
//! Invariant: the bytes are exactly prost's encoding of what
//! `opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope`
//! builds for the same batch and resource, a [`ChildSpan`] standing for its
//! [`ChildSpan::to_span_data`] (`tests` decodes them field by field and
//! compares them byte for byte):
//! one `ResourceSpans`, one `ScopeSpans` per instrumentation scope in order
//! of first appearance, spans in batch order. Runs on the batch processor's
//! export thread, never on a request's task.

use super::finished::{ChildSpan, Finished};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::time::{SystemTime, UNIX_EPOCH};

/// `SpanFlags` bits of the OTLP proto: the context says whether its parent is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// An `ExportTraceServiceRequest` for `spans` of a process described by `resource`.
pub(super) fn request(spans: &[Finished], resource: &Resource) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256 + spans.len() * 256);
    nested(&mut buf, 1, |buf| {
        nested(buf, 1, |buf| {
            for (key, value) in resource.iter() {
                key_value(buf, 1, key.as_str(), value);
            }
        });
        // Each span's scope, as an index into `scopes` (first appearance order).
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        let mut scope_of = Vec::with_capacity(spans.len());
        for span in spans {
            let scope = span.scope();
            let index = match scopes.iter().position(|known| same_scope(known, scope)) {
                Some(index) => index,
                None => {
                    scopes.push(scope);
                    scopes.len() - 1
                }
            };
            scope_of.push(index);
        }
        for (index, scope) in scopes.iter().enumerate() {
            nested(buf, 2, |buf| {
                nested(buf, 1, |buf| {
                    string(buf, 1, scope.name());
                    string(buf, 2, scope.version().unwrap_or_default());
                    for kv in scope.attributes() {
                        key_value(buf, 3, kv.key.as_str(), &kv.value);
                    }
                });
                for (span, _) in spans.iter().zip(&scope_of).filter(|(_, i)| **i == index) {
                    nested(buf, 2, |buf| match span {
                        Finished::Sdk(span) => encode_span(buf, span),
                        Finished::Child(span) => encode_child(buf, span),
                    });
                }
                string(buf, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(buf, 3, resource.schema_url().unwrap_or_default());
    });
    buf
}

/// `a == b`, answered without comparing text when both are clones of one
/// scope (the usual case: every span of a tracer carries its scope's clone,
/// whose `'static` strings share their address).
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    let same_text = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        (None, None) => true,
        _ => false,
    };
    let clones = same_text(Some(a.name()), Some(b.name()))
        && same_text(a.version(), b.version())
        && same_text(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    clones || a == b
}

fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let cx = &span.span_context;
    bytes(buf, 1, &cx.trace_id().to_bytes());
    bytes(buf, 2, &cx.span_id().to_bytes());
    string(buf, 3, &cx.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, kind(&span.span_kind));
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    attributes(buf, 9, &span.attributes);
    uint(buf, 10, span.dropped_attributes_count.into());
    for event in &span.events.events {
        nested(buf, 11, |buf| {
            fixed64(buf, 1, nanos(event.timestamp));
            string(buf, 2, &event.name);
            attributes(buf, 3, &event.attributes);
            uint(buf, 4, event.dropped_attributes_count.into());
        });
    }
    uint(buf, 12, span.events.dropped_count.into());
    for link in &span.links.links {
        let lcx = &link.span_context;
        nested(buf, 13, |buf| {
            bytes(buf, 1, &lcx.trace_id().to_bytes());
            bytes(buf, 2, &lcx.span_id().to_bytes());
            string(buf, 3, &lcx.trace_state().header());
            attributes(buf, 4, &link.attributes);
            uint(buf, 5, link.dropped_attributes_count.into());
            fixed32(buf, 6, flags(lcx.is_remote(), lcx.trace_flags().to_u8()));
        });
    }
    uint(buf, 14, span.links.dropped_count.into());
    nested(buf, 15, |buf| {
        if let Status::Error { description } = &span.status {
            string(buf, 2, description);
        }
        let code = match span.status {
            Status::Unset => 0,
            Status::Ok => 1,
            Status::Error { .. } => 2,
        };
        uint(buf, 3, code);
    });
    fixed32(
        buf,
        16,
        flags(span.parent_span_is_remote, cx.trace_flags().to_u8()),
    );
}

/// What [`encode_span`] writes for [`ChildSpan::to_span_data`].
fn encode_child(buf: &mut Vec<u8>, span: &ChildSpan) {
    let parent = &span.parent;
    bytes(buf, 1, &parent.trace_id().to_bytes());
    bytes(buf, 2, &span.span_id.to_bytes());
    string(buf, 3, &parent.trace_state().header());
    if parent.span_id() != SpanId::INVALID {
        bytes(buf, 4, &parent.span_id().to_bytes());
    }
    string(buf, 5, span.name);
    uint(buf, 6, kind(&SpanKind::Internal));
    fixed64(buf, 7, nanos(span.start));
    fixed64(buf, 8, nanos(span.end));
    attributes(buf, 9, &span.attributes);
    // No dropped attributes, events or links; the status is unset (code 0).
    nested(buf, 15, |_| {});
    fixed32(buf, 16, flags(false, parent.trace_flags().to_u8()));
}

fn flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | FLAG_HAS_IS_REMOTE | if remote { FLAG_IS_REMOTE } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn attributes(buf: &mut Vec<u8>, tag: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        key_value(buf, tag, kv.key.as_str(), &kv.value);
    }
}

fn key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value: &Value) {
    nested(buf, tag, |buf| {
        string(buf, 1, key);
        nested(buf, 2, |buf| any_value(buf, value));
    });
}

/// The `AnyValue` oneof: the field is written even when it holds its default.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            key(buf, 2, WireType::Varint);
            buf.push(u8::from(*b));
        }
        Value::I64(i) => {
            key(buf, 3, WireType::Varint);
            varint(buf, *i as u64);
        }
        Value::F64(f) => {
            key(buf, 4, WireType::SixtyFourBit);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Array(array) => nested(buf, 5, |buf| match array {
            Array::Bool(v) => v.iter().for_each(|x| element(buf, Value::Bool(*x))),
            Array::I64(v) => v.iter().for_each(|x| element(buf, Value::I64(*x))),
            Array::F64(v) => v.iter().for_each(|x| element(buf, Value::F64(*x))),
            Array::String(v) => v
                .iter()
                .for_each(|x| element(buf, Value::String(x.clone()))),
            other => element(buf, Value::String(other.to_string().into())),
        }),
        other => {
            let text = other.as_str();
            key(buf, 1, WireType::LengthDelimited);
            varint(buf, text.len() as u64);
            buf.extend_from_slice(text.as_bytes());
        }
    }
}

/// One `ArrayValue.values` entry.
fn element(buf: &mut Vec<u8>, value: Value) {
    nested(buf, 1, |buf| any_value(buf, &value));
}

/// Field `tag` holding the message `f` writes (always written, even empty).
///
/// One byte is kept for the length, which holds any length below 128 (most
/// attributes, values and statuses): only a longer message (a span, the
/// scope and resource groups) is moved up to make room for its varint.
fn nested(buf: &mut Vec<u8>, tag: u32, f: impl FnOnce(&mut Vec<u8>)) {
    key(buf, tag, WireType::LengthDelimited);
    let start = buf.len();
    buf.push(0);
    f(buf);
    let len = buf.len() - start - 1;
    if len < 0x80 {
        buf[start] = len as u8;
        return;
    }
    let prefix = encoded_len_varint(len as u64);
    buf.resize(buf.len() + prefix - 1, 0);
    buf.copy_within(start + 1..start + 1 + len, start + prefix);
    let mut head = &mut buf[start..start + prefix];
    encode_varint(len as u64, &mut head);
}

/// A field's key: one byte for the tags below 16 (all but `Span.flags`).
fn key(buf: &mut Vec<u8>, tag: u32, wire_type: WireType) {
    if tag < 16 {
        buf.push((tag << 3) as u8 | wire_type as u8);
    } else {
        encode_key(tag, wire_type, buf);
    }
}

/// A varint: one byte below 128, prost's loop above.
fn varint(buf: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        buf.push(value as u8);
    } else {
        encode_varint(value, buf);
    }
}

fn bytes(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        key(buf, tag, WireType::LengthDelimited);
        varint(buf, value.len() as u64);
        buf.extend_from_slice(value);
    }
}

fn string(buf: &mut Vec<u8>, tag: u32, value: &str) {
    bytes(buf, tag, value.as_bytes());
}

fn uint(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        key(buf, tag, WireType::Varint);
        varint(buf, value);
    }
}

fn fixed64(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        key(buf, tag, WireType::SixtyFourBit);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        key(buf, tag, WireType::ThirtyTwoBit);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
#[path = "otlp_encode_tests.rs"]
mod tests;
