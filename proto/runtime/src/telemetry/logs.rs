//! Log lines: `tracing-subscriber`'s fmt output on stdout, filtered by
//! `RUST_LOG` (default `info`), as human text or one JSON object per line.
//!
//! A line written while an OpenTelemetry span is current also carries its ids:
//! top-level `"trace_id"` (32 hex) and `"span_id"` (16 hex) keys in JSON,
//! ` trace_id=… span_id=…` at the end in text. The ids come from the current
//! OpenTelemetry context, which the `tracing-opentelemetry` layer activates on
//! span entry, so they are exactly the ids of the exported span. Where the
//! current context is only a caller's (remote) parent, as in a process that
//! exports nothing, the line carries that `trace_id` alone: the span id is
//! the caller's, not one of ours. Remote parents only get there through the
//! strict parser in `w3c`, so a malformed header never shows up as an id.

use clap::ValueEnum;
use opentelemetry::{
    Context,
    trace::{SpanId, TraceContextExt as _, TraceId},
};
use std::{env, fmt, io::IsTerminal as _};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{
        FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::{self, JsonFields, Writer},
    },
    registry::LookupSpan,
};

/// `MESSENGER_LOG_FORMAT`.
pub const ENV_LOG_FORMAT: &str = "MESSENGER_LOG_FORMAT";

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The log filter's variable (`tracing-subscriber`'s `EnvFilter` syntax).
pub const ENV_RUST_LOG: &str = "RUST_LOG";

/// Used when `RUST_LOG` is unset, empty or invalid.
const DEFAULT_FILTER: &str = "info";

/// OpenTelemetry's own diagnostics repeat on every failed export (a collector
/// that is down means a warning and an error per batch), so they stay off
/// unless `RUST_LOG` names them, e.g. `RUST_LOG=info,opentelemetry=warn`.
const QUIET_OTEL: &str = "opentelemetry=off";

/// The `RUST_LOG` filter for log lines (it does not decide what is traced).
pub(super) fn env_filter(warnings: &mut Vec<String>) -> EnvFilter {
    let spec = env::var(ENV_RUST_LOG)
        .ok()
        .filter(|spec| !spec.trim().is_empty());
    let filter = match spec.as_deref() {
        None => EnvFilter::new(DEFAULT_FILTER),
        Some(spec) => EnvFilter::try_new(spec).unwrap_or_else(|error| {
            warnings.push(format!(
                "{ENV_RUST_LOG}={spec:?} is invalid ({error}); using {DEFAULT_FILTER:?}"
            ));
            EnvFilter::new(DEFAULT_FILTER)
        }),
    };
    if spec.is_some_and(|spec| spec.contains("opentelemetry")) {
        return filter;
    }
    match QUIET_OTEL.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// The log layer writing to stdout; colours only when stdout is a terminal.
pub(super) fn stdout_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    layer(format, std::io::stdout, std::io::stdout().is_terminal())
}

pub(super) fn layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => base
            .with_ansi(ansi)
            .event_format(WithTraceIds {
                // The inner format writes into a plain buffer, so it must be
                // told about colours itself.
                inner: format::format().with_ansi(ansi),
                style: Style::Text,
            })
            .boxed(),
        LogFormat::Json => base
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds {
                inner: format::format().json().with_current_span(true),
                style: Style::Json,
            })
            .boxed(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Style {
    Text,
    Json,
}

/// Wraps a stock event format and adds the current span's ids to its line.
struct WithTraceIds<F> {
    inner: F,
    style: Style,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = TraceIds::current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // The stock formats cannot take extra top-level keys, so format the
        // line aside and splice the ids in.
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match self.style {
            Style::Json => ids.write_json(&mut writer, &line),
            Style::Text => ids.write_text(&mut writer, &line),
        }
    }
}

/// Ids of the span in the current OpenTelemetry context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TraceIds {
    trace_id: TraceId,
    /// `None` for a remote parent.
    span_id: Option<SpanId>,
}

impl TraceIds {
    /// `None` outside a span; no span id for a bare remote parent (its span
    /// id is the caller's, not one of ours).
    fn current() -> Option<Self> {
        Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            context.is_valid().then(|| Self {
                trace_id: context.trace_id(),
                span_id: (!context.is_remote()).then(|| context.span_id()),
            })
        })
    }

    /// `{"trace_id":…,"span_id":…,<the rest of the object>`.
    fn write_json(self, writer: &mut impl fmt::Write, line: &str) -> fmt::Result {
        let Some(rest) = line.strip_prefix('{') else {
            return writer.write_str(line);
        };
        let comma = if rest.starts_with('}') { "" } else { "," };
        write!(writer, r#"{{"trace_id":"{}""#, self.trace_id)?;
        if let Some(span_id) = self.span_id {
            write!(writer, r#","span_id":"{span_id}""#)?;
        }
        write!(writer, "{comma}{rest}")
    }

    /// `<line> trace_id=… span_id=…`, keeping the newline last.
    fn write_text(self, writer: &mut impl fmt::Write, line: &str) -> fmt::Result {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        write!(writer, "{body} trace_id={}", self.trace_id)?;
        if let Some(span_id) = self.span_id {
            write!(writer, " span_id={span_id}")?;
        }
        writer.write_str(newline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: TraceIds = TraceIds {
        trace_id: TraceId::from_bytes([0xab; 16]),
        span_id: Some(SpanId::from_bytes([0xcd; 8])),
    };

    fn json(line: &str) -> String {
        let mut out = String::new();
        IDS.write_json(&mut out, line).unwrap();
        out
    }

    #[test]
    fn json_ids_are_the_first_top_level_keys() {
        let trace = "ab".repeat(16);
        let span = "cd".repeat(8);
        assert_eq!(
            json("{\"level\":\"INFO\"}\n"),
            format!("{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",\"level\":\"INFO\"}}\n")
        );
        assert_eq!(
            json("{}\n"),
            format!("{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}\n")
        );
        assert_eq!(json("not json\n"), "not json\n");
    }

    #[test]
    fn text_ids_go_before_the_newline() {
        let mut out = String::new();
        IDS.write_text(&mut out, "INFO x: hello a=1\n").unwrap();
        let want = format!(
            "INFO x: hello a=1 trace_id={} span_id={}\n",
            "ab".repeat(16),
            "cd".repeat(8)
        );
        assert_eq!(out, want);
    }

    #[test]
    fn no_ids_outside_a_span() {
        assert_eq!(TraceIds::current(), None);
    }

    #[test]
    fn a_remote_parent_gives_its_trace_id_alone() {
        let remote = TraceIds {
            span_id: None,
            ..IDS
        };
        let mut json = String::new();
        remote
            .write_json(&mut json, "{\"level\":\"INFO\"}\n")
            .unwrap();
        let trace = "ab".repeat(16);
        assert_eq!(
            json,
            format!("{{\"trace_id\":\"{trace}\",\"level\":\"INFO\"}}\n")
        );
        let mut text = String::new();
        remote.write_text(&mut text, "INFO x: hi\n").unwrap();
        assert_eq!(text, format!("INFO x: hi trace_id={trace}\n"));
        let cx = crate::telemetry::context_from_traceparent(&format!(
            "00-{trace}-{}-00",
            "cd".repeat(8)
        ));
        let _attached = cx.attach();
        assert_eq!(TraceIds::current(), Some(remote));
    }
}
