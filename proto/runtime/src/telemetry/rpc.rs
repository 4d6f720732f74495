//! The one shape of a `mes_grpc.MessengerServer/<Method>` RPC span, shared by
//! the client (CLIENT side) and the server (SERVER side).
//!
//! Invariants:
//! - The span is named `<service>/<method>` and carries the OpenTelemetry RPC
//!   semantic-convention attributes `rpc.system = "grpc"`, `rpc.service`
//!   ([`messenger_proto::SERVICE_NAME`]) and `rpc.method`, in that order on
//!   both sides, at debug level (so `RUST_LOG=info` never formats it, yet it
//!   is exported).
//! - Its outcome is recorded once, by [`record_rpc_status`]:
//!   `rpc.grpc.status_code` is the numeric gRPC code, and any code but `OK`
//!   marks the span's status `ERROR`.
//!
//! [`rpc_span!`](crate::rpc_span) is a macro rather than a function so the
//! span keeps its call site: its `tracing` target (what `RUST_LOG` filters
//! on, and what lets it reach the exporter) and its code-location attributes
//! stay the caller's module.

/// The service name in [`rpc_span!`](crate::rpc_span)'s span names, which
/// must be a literal there; checked against the wire crate's at compile time.
const SPAN_SERVICE: &str = "mes_grpc.MessengerServer";
const _: () = assert!(same(SPAN_SERVICE, messenger_proto::SERVICE_NAME));

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What [`rpc_span!`](crate::rpc_span) expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use messenger_proto::SERVICE_NAME;
    pub use tracing;
}

/// Builds the debug-level span `mes_grpc.MessengerServer/<method>` of one
/// call: `rpc_span!(client, "SendMessage")` or `rpc_span!(server, "SendMessage")`
/// (`otel.kind` CLIENT or SERVER). `rpc.grpc.status_code` and
/// `otel.status_code` start empty; fill them with [`record_rpc_status`].
/// Attribute names follow OpenTelemetry's RPC semantic conventions
/// (<https://opentelemetry.io/docs/specs/semconv/rpc/grpc/>).
#[macro_export]
macro_rules! rpc_span {
    (client, $method:literal) => {
        $crate::rpc_span!(@kind "client", $method)
    };
    (server, $method:literal) => {
        $crate::rpc_span!(@kind "server", $method)
    };
    (@kind $kind:literal, $method:literal) => {
        $crate::telemetry::rpc::__private::tracing::debug_span!(
            concat!("mes_grpc.MessengerServer/", $method),
            otel.kind = $kind,
            rpc.system = "grpc",
            rpc.service = $crate::telemetry::rpc::__private::SERVICE_NAME,
            rpc.method = $method,
            rpc.grpc.status_code = $crate::telemetry::rpc::__private::tracing::field::Empty,
            otel.status_code = $crate::telemetry::rpc::__private::tracing::field::Empty
        )
    };
}

/// Records a call's outcome on a span from [`rpc_span!`](crate::rpc_span):
/// `rpc.grpc.status_code = code as i32`, and `otel.status_code = "ERROR"`
/// for every code but `OK` (the client and server conventions agree here for
/// our two methods).
pub fn record_rpc_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
    use opentelemetry::{KeyValue, Value};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Debug, Clone, Default)]
    struct Spans(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Spans {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// The spans exported while `body` runs under the production OTel layer.
    fn exported(body: impl FnOnce()) -> Vec<SpanData> {
        let spans = Spans::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(super::super::traces::otel_layer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, body);
        provider.shutdown().unwrap();
        spans.0.lock().unwrap().clone()
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv: &&KeyValue| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn both_sides_export_the_same_name_and_rpc_attributes() {
        let spans = exported(|| {
            record_rpc_status(&crate::rpc_span!(client, "SendMessage"), tonic::Code::Ok);
            let server = crate::rpc_span!(server, "SendMessage");
            record_rpc_status(&server, tonic::Code::InvalidArgument);
        });
        let [client, server] = spans.as_slice() else {
            panic!("two spans expected: {spans:?}")
        };
        for span in [client, server] {
            assert_eq!(span.name, "mes_grpc.MessengerServer/SendMessage");
            assert_eq!(attr(span, "rpc.system"), Some(&Value::from("grpc")));
            assert_eq!(
                attr(span, "rpc.service"),
                Some(&Value::from("mes_grpc.MessengerServer"))
            );
            assert_eq!(attr(span, "rpc.method"), Some(&Value::from("SendMessage")));
        }
        assert_eq!(client.span_kind, SpanKind::Client);
        assert_eq!(attr(client, "rpc.grpc.status_code"), Some(&Value::I64(0)));
        assert_eq!(client.status, Status::Unset);
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(attr(server, "rpc.grpc.status_code"), Some(&Value::I64(3)));
        assert!(
            matches!(server.status, Status::Error { .. }),
            "{:?}",
            server.status
        );
    }
}
