//! The process runtime both binaries share (`messenger-server` and
//! `messenger-client`): everything a production process needs around the
//! wire types, kept out of `messenger-proto` so the bench and fuzz targets
//! never compile it.
//!
//! It lives in `proto/runtime/` because the repository's top level is fixed;
//! `proto/` holds the two crates every binary links, the wire crate and this
//! one. A separate crate (rather than a feature of the wire crate) keeps the
//! boundary visible in `Cargo.toml` and immune to feature unification.
//!
//! - [`telemetry`]: the `tracing` subscriber (text/JSON logs with trace ids),
//!   OTLP trace export from the standard `OTEL_*` variables, and W3C
//!   trace-context propagation over HTTP headers and gRPC metadata, and the
//!   one `mes_grpc.MessengerServer/<Method>` RPC span ([`rpc_span!`]) of both
//!   binaries.
//! - [`metrics`]: the Prometheus exporter (one global recorder, per-histogram
//!   buckets, process metrics) and go-grpc-prometheus code names.
//! - [`tls`]: PEM files to TLS identities and trust roots; the client side of
//!   TLS (an endpoint from an address and optional CA / client cert / key).
//! - [`conn`]: connection hygiene on every listener: handshake and idle
//!   bounds, prompt close of idle connections at shutdown, and the accept
//!   loop of the axum routers.
//! - [`cli`]: config parsing that fails with one line and exit code 2, the
//!   SIGINT/SIGTERM shutdown signal, the open-files limit and the local
//!   health-probe address.

pub mod cli;
pub mod conn;
pub mod metrics;
pub mod telemetry;
pub mod tls;
