//! An in-process OTLP/gRPC trace receiver: a tonic `TraceService` on
//! `127.0.0.1:0` that keeps every exported span, flattened with its
//! resource's attributes and its instrumentation scope, and wakes waiters on
//! each export so a test can wait for a predicate over all spans so far.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// An attribute value, as far as the tests need to tell them apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes, debug-printed.
    Other(String),
}

/// One received span with the context it was exported in.
#[derive(Debug, Clone)]
pub struct FlatSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub resource: BTreeMap<String, Attr>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// Lower-case hex; `parent_span_id` is empty for a root span.
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// The W3C `tracestate` the span was made with (empty for none).
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub attrs: BTreeMap<String, Attr>,
}

impl FlatSpan {
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            Attr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{}/{} [{}] {:?} '{}' trace={} span={} parent={} {:?}",
            self.service,
            self.scope,
            self.resource_instance(),
            self.kind,
            self.name,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.attrs
        )
    }

    fn resource_instance(&self) -> String {
        match self.resource.get("service.instance.id") {
            Some(Attr::Str(s)) => s.clone(),
            _ => String::new(),
        }
    }
}

/// All spans so far, one line each.
pub fn summarize(spans: &[FlatSpan]) -> String {
    spans.iter().fold(String::new(), |mut out, s| {
        let _ = writeln!(out, "  {}", s.summary());
        out
    })
}

struct Collector {
    spans: watch::Sender<Vec<FlatSpan>>,
    raw: Arc<Mutex<String>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let _ = writeln!(lock(&self.raw), "{request:?}");
        let flat = flatten(request);
        self.spans.send_modify(|all| all.extend(flat));
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: watch::Receiver<Vec<FlatSpan>>,
    raw: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Binds 127.0.0.1:0 and serves in the background.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind OTLP");
        let addr = listener.local_addr().expect("local addr");
        let (tx, spans) = watch::channel(Vec::new());
        let raw = Arc::default();
        let service = TraceServiceServer::new(Collector {
            spans: tx,
            raw: Arc::clone(&raw),
        });
        let task = tokio::spawn(async move {
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .expect("OTLP receiver serves");
        });
        Self {
            addr,
            spans,
            raw,
            task,
        }
    }

    /// Every export request received so far, debug-printed in full (span
    /// events and all attributes included), for scanning.
    pub fn raw_exports(&self) -> String {
        lock(&self.raw).clone()
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<FlatSpan> {
        self.spans.borrow().clone()
    }

    /// Waits until `pred` holds over all spans received so far; returns them.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[FlatSpan]) -> bool) -> Vec<FlatSpan> {
        let check = |s: &[FlatSpan]| pred(s).then_some(()).ok_or_else(|| "not yet".to_owned());
        self.wait_check(what, check).await
    }

    /// Waits until `check` passes over all spans received so far; returns
    /// them. After [`crate::WAIT`] fails with `check`'s last complaint and
    /// every span received.
    pub async fn wait_check(
        &self,
        what: &str,
        check: impl Fn(&[FlatSpan]) -> Result<(), String>,
    ) -> Vec<FlatSpan> {
        let mut rx = self.spans.clone();
        // Either way the verdict comes from `check` below; the guard that
        // `wait_for` returns is dropped here, before `spans()` reads again.
        let _met = tokio::time::timeout(crate::WAIT, rx.wait_for(|s| check(s).is_ok()))
            .await
            .is_ok_and(|r| r.is_ok());
        let spans = self.spans();
        if let Err(why) = check(&spans) {
            panic!(
                "{what}: {why}\nreceived {} spans:\n{}",
                spans.len(),
                summarize(&spans)
            );
        }
        spans
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One [`FlatSpan`] per span in the request.
pub fn flatten(request: ExportTraceServiceRequest) -> Vec<FlatSpan> {
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let resource = attrs(rs.resource.map(|r| r.attributes).unwrap_or_default());
        let service = match resource.get("service.name") {
            Some(Attr::Str(s)) => s.clone(),
            _ => String::new(),
        };
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            out.extend(ss.spans.into_iter().map(|span| FlatSpan {
                service: service.clone(),
                resource: resource.clone(),
                scope: scope.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                trace_state: span.trace_state,
                kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                name: span.name,
                attrs: attrs(span.attributes),
            }));
        }
    }
    out
}

fn attrs(list: Vec<KeyValue>) -> BTreeMap<String, Attr> {
    list.into_iter()
        .map(|kv| (kv.key, attr(kv.value)))
        .collect()
}

fn attr(value: Option<AnyValue>) -> Attr {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => Attr::Str(s),
        Some(any_value::Value::IntValue(i)) => Attr::Int(i),
        Some(any_value::Value::DoubleValue(d)) => Attr::Double(d),
        Some(any_value::Value::BoolValue(b)) => Attr::Bool(b),
        other => Attr::Other(format!("{other:?}")),
    }
}

fn lock(raw: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    raw.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A W3C trace context to send in a `traceparent` header, as an upstream
/// caller would.
#[derive(Debug, Clone)]
pub struct TraceParent {
    pub trace_id: String,
    pub span_id: String,
}

impl TraceParent {
    /// Random, non-zero ids.
    pub fn random() -> Self {
        let trace = rand::random::<u128>().max(1);
        let span = rand::random::<u64>().max(1);
        Self {
            trace_id: format!("{trace:032x}"),
            span_id: format!("{span:016x}"),
        }
    }

    /// The sampled `traceparent` header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Lower-case hex of `bytes`; empty for none (an absent parent).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            name: "deliver".into(),
            kind: SpanKind::Internal as i32,
            attributes: vec![kv("n", any_value::Value::IntValue(7))],
            ..Default::default()
        };
        let name = any_value::Value::StringValue("svc".into());
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", name)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(Default::default()),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn receives_and_flattens_an_export() {
        let receiver = OtlpReceiver::start().await;
        let mut client = TraceServiceClient::connect(receiver.endpoint())
            .await
            .unwrap();
        client.export(request()).await.unwrap();
        let spans = receiver.wait_for("one span", |s| !s.is_empty()).await;
        let span = &spans[0];
        assert_eq!(span.service, "svc");
        assert_eq!(span.name, "deliver");
        assert_eq!(span.kind, SpanKind::Internal);
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "0102030405060708");
        assert_eq!(span.parent_span_id, "");
        assert_eq!(span.attr("n"), Some(&Attr::Int(7)));
    }
}
