//! What the server and the client share.
//!
//! - [`pb`]: generated code for the `mes_grpc` package (`messenger.proto`,
//!   CONTRACT.md) and [`FILE_DESCRIPTOR_SET`] for reflection. The set includes
//!   the imported well-known types, so grpcurl resolves every type without a
//!   local `.proto`.
//! - [`time`]: how a `sendTime` is built and rendered (9 fractional digits).
//! - [`telemetry`]: log setup used by both binaries.
//! - [`tls`]: PEM files to TLS identities and trust roots; the client side of
//!   TLS (an endpoint from an address and optional CA / client cert / key).
//! - [`cli`]: config parsing that fails with one line and exit code 2, and the
//!   SIGINT/SIGTERM shutdown signal.

pub mod cli;
pub mod metrics;
pub mod telemetry;
pub mod time;
pub mod tls;

/// Generated `mes_grpc` messages, client and server.
#[allow(unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mes_grpc");
}

/// Encoded `FileDescriptorSet` of `messenger.proto` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/messenger_descriptor.bin"));

/// Fully qualified service name, as used in health checks and logs.
pub const SERVICE_NAME: &str = "mes_grpc.MessengerServer";

/// `ReadMessages` request metadata by which a subscriber asks for each
/// message's `traceparent` (value `1`). Callers that don't ask never see it.
pub const TRACE_CONTEXT_METADATA: &str = "messenger-trace-context";

/// Request metadata that carries `Bearer <token>` when the server requires
/// token auth. Sensitive: never logged.
pub const AUTHORIZATION_METADATA: &str = "authorization";
