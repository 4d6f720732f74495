//! The OTLP/gRPC span exporter behind our batch processor
//! ([`super::processor`]): each batch is encoded by [`super::otlp_encode`] on
//! the processor's own thread and sent as one unary `TraceService/Export`
//! call on the export runtime, the thread waiting for its result.
//!
//! It replaces `opentelemetry-otlp`'s tonic exporter, which cloned every
//! batch and built the generated protobuf structs span by span (issue 28).
//! It reads the same standard variables that one did (with this build's
//! features: plain-text gRPC, no compression):
//! - the endpoint ([`super::traces`] finds it), used as given;
//! - `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
//!   `key=value,...`, values URL-decoded, sent as gRPC metadata (a pair that
//!   is not a valid header is skipped with a warning);
//! - `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`:
//!   milliseconds one export may take, default [`DEFAULT_EXPORT_TIMEOUT`].
//!
//! A failed export is reported to the processor, which logs it; spans are
//! not retried (as before: the old exporter's retry was off in this build).

use bytes::{Buf, BufMut};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use std::env;
use std::time::Duration;
use tokio::runtime::Handle;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

const ENV_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const ENV_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const ENV_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const ENV_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// The OTLP specification's default export timeout.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The gRPC method of the OTLP trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Debug)]
pub(super) struct OtlpExporter {
    channel: Channel,
    metadata: MetadataMap,
    timeout: Duration,
    /// The export runtime: the call and its timer run there.
    runtime: Handle,
    resource: Resource,
}

impl OtlpExporter {
    /// An exporter to `endpoint` (a URI) of spans of a process described by
    /// `resource`, connecting lazily on `runtime`. Header problems are pushed
    /// to `warnings`; a bad endpoint is an error.
    pub(super) fn new(
        endpoint: &str,
        runtime: Handle,
        resource: Resource,
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| format!("invalid OTLP endpoint {endpoint:?}: {e}"))?;
        let channel = {
            // connect_lazy spawns the channel's worker on the current runtime.
            let _entered = runtime.enter();
            channel.connect_lazy()
        };
        let var = |signal: &str, all: &str| env::var(signal).or_else(|_| env::var(all)).ok();
        let headers = var(ENV_OTLP_TRACES_HEADERS, ENV_OTLP_HEADERS).unwrap_or_default();
        let timeout = var(ENV_OTLP_TRACES_TIMEOUT, ENV_OTLP_TIMEOUT)
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis);
        Ok(Self {
            channel,
            metadata: metadata(&headers, warnings),
            timeout,
            runtime,
            resource,
        })
    }
}

impl super::processor::Export for OtlpExporter {
    /// Encodes `batch` here, sends it on the export runtime and waits.
    fn export(&mut self, batch: &[super::finished::Finished]) -> OTelSdkResult {
        let body = super::otlp_encode::request(batch, &self.resource);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let mut request = Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let timeout = self.timeout;
        let call = self.runtime.spawn(async move {
            let call = async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let path = PathAndQuery::from_static(EXPORT_PATH);
                grpc.unary(request, path, RawCodec).await
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(OTelSdkError::InternalFailure(format!(
                    "OTLP export failed: {status}"
                ))),
                Err(_) => Err(OTelSdkError::Timeout(timeout)),
            }
        });
        // The processor's own thread, never a runtime's: blocking is its job.
        self.runtime
            .block_on(call)
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
    }
}

/// `key=value,...` (values URL-decoded) as gRPC metadata.
fn metadata(headers: &str, warnings: &mut Vec<String>) -> MetadataMap {
    let mut map = MetadataMap::new();
    for pair in headers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(k, v)| {
            let key = MetadataKey::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).ok()?;
            let value = MetadataValue::try_from(url_decode(v.trim())?).ok()?;
            Some((key, value))
        });
        match parsed {
            Some((key, value)) => {
                map.append(key, value);
            }
            None => warnings.push(format!(
                "OTLP header {pair:?} is not key=value with a valid name and value; skipped"
            )),
        }
    }
    map
}

/// `%XX` sequences as bytes; `None` if one is malformed or the result is not UTF-8.
fn url_decode(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Sends already-encoded protobuf; ignores the response's content (an
/// `ExportTraceServiceResponse`, whose partial-success details are advisory).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_url_decoded_and_bad_pairs_warned() {
        let mut warnings = Vec::new();
        let map = metadata(
            "api-key=secret%20one, X-Tenant = a ,bad,=x,k=%zz",
            &mut warnings,
        );
        assert_eq!(map.get("api-key").unwrap(), "secret one");
        assert_eq!(map.get("x-tenant").unwrap(), "a");
        assert_eq!(map.len(), 2);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert_eq!(url_decode("a%2Cb"), Some("a,b".to_owned()));
        assert_eq!(url_decode("%e2%82%ac"), Some("€".to_owned()));
        assert_eq!(url_decode("%ff"), None);
    }
}
