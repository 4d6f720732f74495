//! `otlp-sink` (hidden): an OTLP/gRPC trace receiver that accepts every
//! export and only counts spans, so a server can run with its exporter on.
//!
//! Prints `otlp_addr=IP:PORT` once listening, and `spans_received=N` when
//! stopped by SIGINT or SIGTERM.
//!
//! It decodes only what it counts: `ExportTraceServiceRequest.resource_spans[]
//! .scope_spans[].spans[]`, with the field numbers of the OTLP protos
//! (`opentelemetry/proto/collector/trace/v1/trace_service.proto` and
//! `trace/v1/trace.proto`). Each span stays undecoded bytes; prost skips every
//! other field. This keeps the OpenTelemetry SDK out of the bench's build.

use crate::cli::OtlpSinkArgs;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

/// `opentelemetry.proto.trace.v1.ResourceSpans` (`resource` = 1 skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

/// `opentelemetry.proto.trace.v1.ScopeSpans`: each `Span` left encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<bytes::Bytes>,
}

/// `ExportTraceServiceResponse` with no `partial_success`: full success.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceResponse {}

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The `TraceService` gRPC service: `Export` counts, anything else is
/// `UNIMPLEMENTED`.
#[derive(Clone)]
struct TraceSink {
    spans: Arc<AtomicU64>,
}

impl NamedService for TraceSink {
    const NAME: &'static str = SERVICE;
}

impl UnaryService<ExportTraceServiceRequest> for TraceSink {
    type Response = ExportTraceServiceResponse;
    type Future = std::future::Ready<Result<Response<Self::Response>, Status>>;

    fn call(&mut self, request: Request<ExportTraceServiceRequest>) -> Self::Future {
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        std::future::ready(Ok(Response::new(ExportTraceServiceResponse {})))
    }
}

impl Service<http::Request<Body>> for TraceSink {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let sink = self.clone();
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                let status = Status::unimplemented(format!("{} is not served", req.uri().path()));
                return Ok(status.into_http());
            }
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(sink, req).await)
        })
    }
}

pub(crate) async fn run(args: OtlpSinkArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local addr: {e}"))?;
    let spans = Arc::new(AtomicU64::new(0));
    let service = TraceSink {
        spans: spans.clone(),
    };
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let stopped = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    println!("otlp_addr={addr}");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("stdout: {e}"))?;
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopped)
        .await
        .map_err(|e| format!("OTLP receiver: {e}"))?;
    println!("spans_received={}", spans.load(Ordering::Relaxed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// A request shaped like the OTLP one: resource (1) and schema_url (3)
    /// fields around the spans, each span with a name (field 5).
    #[test]
    fn counts_spans_and_skips_everything_else() {
        fn field(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![(tag << 3) | 2, body.len() as u8];
            out.extend_from_slice(body);
            out
        }
        let span = field(5, b"mes_grpc.MessengerServer/SendMessage");
        let scope = [
            field(1, &field(1, b"messenger")),
            field(2, &span),
            field(2, &span),
        ]
        .concat();
        let resource = [
            field(1, &field(1, b"attrs")),
            field(2, &scope),
            field(3, b"url"),
        ]
        .concat();
        let request = [field(1, &resource), field(1, &field(2, &scope))].concat();
        let decoded = ExportTraceServiceRequest::decode(&request[..]).expect("decodes");
        let n: usize = decoded
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        assert_eq!(n, 4);
    }
}
