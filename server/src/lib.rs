//! `messenger-server`: one chat, fanned out to every `ReadMessages` stream.
//!
//! - [`config`]: flags and environment (`ENV_*`, `DEFAULT_*`).
//! - [`engine`]: the engine trait (offsets, epoch, `sendTime`, history) and
//!   its in-process implementation with bounded history.
//! - [`hub`]: the fan-out core: total order, bounded queues, resume without a
//!   seam, the slow-subscriber policy. Knows nothing about gRPC.
//! - [`resume`]: the resume protocol's request metadata and response headers.
//! - [`service`]: `mes_grpc.MessengerServer`, mapping proto to the hub.
//! - [`error`]: the service's error type and its one conversion to `Status`.
//! - [`metrics`]: every exported metric: names, descriptions, buckets, handles.
//! - [`trace`]: the `fanout` and per-subscriber `deliver` spans.
//! - [`debug`]: `GET /debug/subscribers` and the SIGUSR2 dump.
//! - [`healthcheck`]: the `healthcheck` subcommand (container probe).
//! - [`health`]: `grpc.health.v1.Health` as `health.proto` specifies (replaces
//!   tonic-health's server; Watch of an unknown service stays open).
//! - [`reflection`]: server reflection v1 and v1alpha as `reflection.proto`
//!   specifies (replaces tonic-reflection's server; answers carry transitive
//!   dependencies, unknown names get NOT_FOUND in the stream).
//! - [`tls`]: the gRPC port's TLS identity and optional client CA (mTLS).
//! - [`auth`]: bearer-token auth of the messenger service: token table,
//!   constant-time lookup, SIGHUP reload.
//! - [`app`]: bind, serve (with health, reflection and `/metrics`), shut down gracefully.

pub mod admission;
pub mod app;
pub mod auth;
pub mod config;
pub mod debug;
pub mod engine;
pub mod error;
pub mod health;
pub mod healthcheck;
pub mod hub;
pub mod metrics;
pub mod reflection;
pub mod resume;
pub mod service;
pub mod tls;
pub mod trace;

pub use app::{App, AppError};
pub use config::Config;
