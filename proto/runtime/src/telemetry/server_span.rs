//! The SERVER span of one incoming RPC, made with the OpenTelemetry SDK
//! directly instead of through the `tracing` bridge (issue 28).
//!
//! The sampler decides first, when the span starts, before anything else is
//! built. An unsampled call costs one SDK span without data (its context is
//! still passed on, as W3C Trace Context asks); through the bridge, every
//! call built a `tracing` span, a span builder with its attributes, timings
//! and a context activation per poll, sampled or not. A sampled call gets
//! what the bridge gave [`crate::rpc_span!`]'s span, so an operator sees the
//! same span: its name, kind and parent; `code.file.path`,
//! `code.module.name`, `code.line.number`, `thread.id`, `thread.name` and
//! `target` of the call site; the RPC attributes; `rpc.grpc.status_code`
//! and an `ERROR` status for any code but `OK`; `busy_ns` and `idle_ns`; and
//! the events added with [`event_on_current`].
//!
//! Invariants:
//! - Without OTLP export there is no tracer: the span is the caller's
//!   context, unchanged, and nothing is recorded.
//! - While [`ServerSpan::run`] polls the call, the span's context is the
//!   current OpenTelemetry context (log lines carry its ids, spans made
//!   under it are its children, [`super::outgoing`] passes it on).

use opentelemetry::trace::{FutureExt as _, SpanRef};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use std::sync::OnceLock;
use std::time::Instant;

/// The exporting provider's tracer, once OTLP export is installed.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Makes spans record through `tracer` (the first installation wins).
pub(super) fn install(tracer: SdkTracer) {
    let _first = TRACER.set(tracer);
}

/// Where a span or event is made: what the bridge took from `tracing`'s
/// callsite metadata. Made by [`crate::code_site!`].
#[derive(Debug)]
pub struct CodeSite {
    pub file: &'static str,
    /// Also the `target` (the module path, as `tracing`'s default).
    pub module: &'static str,
    pub line: u32,
}

/// The [`CodeSite`] of the macro's caller, as a `&'static`.
#[macro_export]
macro_rules! code_site {
    () => {{
        static SITE: $crate::telemetry::CodeSite = $crate::telemetry::CodeSite {
            file: file!(),
            module: module_path!(),
            line: line!(),
        };
        &SITE
    }};
}

/// Starts the SERVER span `mes_grpc.MessengerServer/<method>` under
/// `parent` (the caller's context, from metadata):
/// `rpc_server_span!("SendMessage", parent)`.
#[macro_export]
macro_rules! rpc_server_span {
    ($method:literal, $parent:expr) => {
        $crate::telemetry::ServerSpan::start(
            concat!("mes_grpc.MessengerServer/", $method),
            $method,
            $crate::code_site!(),
            $parent,
        )
    };
}

/// One RPC's SERVER span; see the module docs.
#[derive(Debug)]
pub struct ServerSpan {
    cx: Context,
    /// Busy and idle time, kept only while the span records.
    timing: Option<Timing>,
}

#[derive(Debug)]
struct Timing {
    busy_ns: u128,
    idle_ns: u128,
    last: Instant,
}

impl ServerSpan {
    /// Use [`crate::rpc_server_span!`].
    pub fn start(
        name: &'static str,
        method: &'static str,
        site: &CodeSite,
        parent: Context,
    ) -> Self {
        Self::start_with(TRACER.get(), name, method, site, parent)
    }

    fn start_with(
        tracer: Option<&SdkTracer>,
        name: &'static str,
        method: &'static str,
        site: &CodeSite,
        parent: Context,
    ) -> Self {
        let Some(tracer) = tracer else {
            return Self {
                cx: parent,
                timing: None,
            };
        };
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        let timing = span.is_recording().then(|| {
            let mut attributes = located(site);
            attributes.extend([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", messenger_proto::SERVICE_NAME),
                KeyValue::new("rpc.method", method),
            ]);
            span.set_attributes(attributes);
            Timing {
                busy_ns: 0,
                idle_ns: 0,
                last: Instant::now(),
            }
        });
        Self {
            cx: parent.with_span(span),
            timing,
        }
    }

    /// Runs `call` with this span's context current, timing its polls.
    pub async fn run<F: Future>(&mut self, call: F) -> F::Output {
        let mut call = std::pin::pin!(call.with_context(self.cx.clone()));
        let timing = &mut self.timing;
        std::future::poll_fn(|cx| {
            let Some(timing) = timing.as_mut() else {
                return call.as_mut().poll(cx);
            };
            let entered = Instant::now();
            timing.idle_ns += (entered - timing.last).as_nanos();
            let polled = call.as_mut().poll(cx);
            timing.last = Instant::now();
            timing.busy_ns += (timing.last - entered).as_nanos();
            polled
        })
        .await
    }

    /// Ends the span with the call's outcome: `rpc.grpc.status_code`, and
    /// an `ERROR` status for any code but `OK`.
    pub fn finish(self, code: tonic::Code) {
        let Some(mut timing) = self.timing else {
            return;
        };
        timing.idle_ns += timing.last.elapsed().as_nanos();
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        span.set_attribute(KeyValue::new("busy_ns", nanos(timing.busy_ns)));
        span.set_attribute(KeyValue::new("idle_ns", nanos(timing.idle_ns)));
        if code != tonic::Code::Ok {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// Adds the event `name` to the current context's span when it records,
/// with the attributes the bridge gives a `tracing` event: `level`,
/// `target`, then `fields()`, then the code location. `fields` runs only
/// then.
pub fn event_on_current(
    name: &'static str,
    level: tracing::Level,
    site: &CodeSite,
    fields: impl FnOnce() -> Vec<KeyValue>,
) {
    Context::map_current(|cx| {
        let span: SpanRef<'_> = cx.span();
        if !span.is_recording() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("level", level.as_str()),
            KeyValue::new("target", site.module),
        ];
        attributes.extend(fields());
        attributes.extend([
            KeyValue::new("code.file.path", site.file),
            KeyValue::new("code.module.name", site.module),
            KeyValue::new("code.line.number", i64::from(site.line)),
        ]);
        span.add_event(name, attributes);
    });
}

/// The call site's attributes, in the bridge's order.
fn located(site: &CodeSite) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(9);
    attributes.extend([
        KeyValue::new("code.file.path", site.file),
        KeyValue::new("code.module.name", site.module),
        KeyValue::new("code.line.number", i64::from(site.line)),
        KeyValue::new("thread.id", THREAD_ID.with(|id| *id)),
    ]);
    if let Some(name) = std::thread::current().name() {
        attributes.push(KeyValue::new("thread.name", name.to_owned()));
    }
    attributes.push(KeyValue::new("target", site.module));
    attributes
}

fn nanos(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

thread_local! {
    /// This thread's id as an integer, as the bridge records it (std's
    /// `ThreadId` has no stable integer accessor, so its `Debug` is parsed).
    static THREAD_ID: i64 = format!("{:?}", std::thread::current().id())
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0);
}

#[cfg(test)]
#[path = "server_span_tests.rs"]
mod tests;
