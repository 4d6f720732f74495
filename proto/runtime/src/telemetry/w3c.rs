//! W3C Trace Context, parsed and written by us rather than by the SDK: the
//! `traceparent` and `tracestate` rules of the Recommendation (level 1), with
//! level 2's stricter `traceparent` reading, and the text-map propagator that
//! every extraction and injection in both binaries goes through.
//!
//! Why our own: the SDK's propagator turns hex into integers without checking
//! lengths (`00-1-…` became trace id `…0001`), accepts a trailing `-`, and
//! always writes a `tracestate`, even an empty one.
//!
//! Invariants:
//! - `traceparent` is exactly `2HEXDIGLC-32HEXDIGLC-16HEXDIGLC-2HEXDIGLC`
//!   around optional spaces/tabs; version `00` has exactly those four fields;
//!   a higher version may only add fields after a `-` at position 55; version
//!   `ff`, all-zero ids, upper-case hex and a repeated header are invalid.
//!   Invalid means ignored: the caller starts a fresh trace and `tracestate`
//!   is not even read (spec: "MUST NOT attempt to parse tracestate").
//! - What we write is always version `00` with only the sampled flag (the
//!   spec's "downgrade the version"; other flags "MUST" be zero in level 1).
//! - `tracestate` header lines are joined as one comma list (RFC 7230 §3.2.2);
//!   empty members are skipped; members that break the grammar are dropped, and
//!   so is every member of a key that occurs twice (no way to know which is
//!   current); then whole members are dropped until at most
//!   [`MAX_TRACESTATE_MEMBERS`] remain within [`MAX_TRACESTATE_LEN`]
//!   characters: members over [`LARGE_MEMBER_LEN`] first (largest first),
//!   then from the end. An empty
//!   result is never sent. (A member the SDK's `TraceState` cannot hold, a
//!   system-id of exactly 14 characters, is dropped as well.)

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use std::fmt;
use std::sync::LazyLock;

/// Header / metadata name of the parent (lower case, as the spec says to send it).
pub const TRACEPARENT: &str = "traceparent";
/// Header / metadata name of the vendor list.
pub const TRACESTATE: &str = "tracestate";
/// Most `tracestate` list members (spec: "a maximum of 32 list-members").
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `tracestate` we propagate, in characters including commas: the
/// spec's "SHOULD propagate at least 512 characters", taken as the bound so
/// that no trace header we send can come near a peer's header-list limit.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Members longer than this go first when cutting (spec: "Entries larger than
/// 128 characters long SHOULD be removed first").
pub const LARGE_MEMBER_LEN: usize = 128;

/// Length of a version-00 `traceparent`; a higher version is at least this long.
const TRACEPARENT_LEN: usize = 55;
const FLAG_SAMPLED: u8 = 0x01;

/// Why a `traceparent` was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTraceParent {
    #[error("more than one traceparent header")]
    Repeated,
    #[error("version is not two lower-case hex digits followed by '-'")]
    Version,
    #[error("version ff is forbidden")]
    ForbiddenVersion,
    #[error("version 00 must be exactly 55 characters (four fields)")]
    Length,
    #[error("a future version must be at least 55 characters, with any extra fields after a '-'")]
    FutureLength,
    #[error("fields must be separated by '-'")]
    Separator,
    #[error("trace-id is not 32 lower-case hex digits")]
    TraceId,
    #[error("parent-id is not 16 lower-case hex digits")]
    ParentId,
    #[error("trace-flags is not 2 lower-case hex digits")]
    Flags,
    #[error("trace-id is all zeros")]
    ZeroTraceId,
    #[error("parent-id is all zeros")]
    ZeroParentId,
}

/// A valid `traceparent`: the caller's trace, its span, and its sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses one header value strictly (see the module invariants).
    pub fn parse(value: &str) -> Result<Self, InvalidTraceParent> {
        use InvalidTraceParent as E;
        let b = value.trim_matches([' ', '\t']).as_bytes();
        let version = b
            .get(..3)
            .filter(|v| v[2] == b'-')
            .and_then(|v| hex(&v[..2]))
            .ok_or(E::Version)?;
        match (version, b.len()) {
            (0xff, _) => return Err(E::ForbiddenVersion),
            (0, len) if len != TRACEPARENT_LEN => return Err(E::Length),
            (_, len) if len < TRACEPARENT_LEN => return Err(E::FutureLength),
            (_, len) if len > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' => {
                return Err(E::FutureLength);
            }
            _ => {}
        }
        if b[35] != b'-' || b[52] != b'-' {
            return Err(E::Separator);
        }
        let trace_id = hex(&b[3..35]).ok_or(E::TraceId)?;
        let parent_id = hex(&b[36..52]).ok_or(E::ParentId)?;
        let flags = hex(&b[53..55]).ok_or(E::Flags)?;
        if trace_id == 0 {
            return Err(E::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(E::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId::from(trace_id),
            parent_id: SpanId::from(parent_id as u64),
            sampled: flags as u8 & FLAG_SAMPLED != 0,
        })
    }

    /// The parent of `cx`, if it has a valid span context.
    pub fn of(cx: &Context) -> Option<Self> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id(),
            parent_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }

    /// A remote span context for this parent carrying `state`.
    pub fn span_context(self, state: TraceState) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(self.trace_id, self.parent_id, flags, true, state)
    }
}

/// Always version `00`, only the sampled flag.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.sampled { "01" } else { "00" };
        write!(f, "00-{}-{}-{flags}", self.trace_id, self.parent_id)
    }
}

/// The value of lower-case hex digits; `None` for anything else (upper case,
/// signs, other characters) or more than 32 digits.
fn hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(v))
    })
}

/// The W3C propagator of both binaries (installed globally by `init`, and
/// used directly by the helpers in `propagation`).
#[derive(Debug, Clone, Copy, Default)]
pub struct W3cPropagator;

static FIELDS: LazyLock<[String; 2]> =
    LazyLock::new(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned()]);

impl W3cPropagator {
    /// The caller's parent and vendor list, or why the parent was ignored
    /// (`Ok(None)`: no `traceparent` at all).
    pub fn read(extractor: &dyn Extractor) -> Result<Option<SpanContext>, InvalidTraceParent> {
        let parent = match extractor.get_all(TRACEPARENT).as_deref() {
            None | Some([]) => return Ok(None),
            Some([one]) => TraceParent::parse(one)?,
            Some(_) => return Err(InvalidTraceParent::Repeated),
        };
        let lines = extractor.get_all(TRACESTATE).unwrap_or_default();
        Ok(Some(parent.span_context(parse_tracestate(lines))))
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let Some(parent) = TraceParent::of(cx) else {
            return;
        };
        injector.set(TRACEPARENT, parent.to_string());
        let state = bounded_tracestate(cx.span().span_context().trace_state());
        let header = state.header();
        if !header.is_empty() {
            injector.set(TRACESTATE, header);
        }
    }

    /// `cx` with the caller's parent; `cx` unchanged when there is none or it
    /// is invalid (logged at debug, never an error: the request goes on).
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::read(extractor) {
            Ok(Some(parent)) => cx.with_remote_span_context(parent),
            Ok(None) => cx.clone(),
            Err(why) => {
                tracing::debug!(%why, "ignoring the caller's traceparent; starting a new trace");
                cx.clone()
            }
        }
    }

    fn fields(&self) -> text_map_propagator::FieldIter<'_> {
        text_map_propagator::FieldIter::new(FIELDS.as_slice())
    }
}

pub use tracestate::{bounded_tracestate, parse_tracestate};

mod tracestate;
#[cfg(test)]
use tracestate::valid_key;

#[cfg(test)]
#[path = "w3c/tests.rs"]
mod tests;
