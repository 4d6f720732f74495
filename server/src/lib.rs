//! `messenger-server`: one chat, fanned out to every `ReadMessages` stream.
//!
//! - [`config`]: flags and environment (`ENV_*`, `DEFAULT_*`); parsing only.
//! - [`engine`]: the engine trait (offsets, epoch, `sendTime`, history), its
//!   in-process implementation with bounded history, and the Redis Streams
//!   engine (`MESSENGER_BROKER_URL`: replicas share one chat).
//! - [`hub`]: the fan-out core: total order, bounded queues, resume without a
//!   seam, the slow-subscriber policy. Knows nothing about gRPC.
//! - [`resume`]: the resume protocol's request metadata and response headers.
//! - [`service`]: `mes_grpc.MessengerServer`, mapping proto to the hub;
//!   validation by the wire's field limits ([`messenger_proto::limits`]).
//! - [`admission`]: in-flight tracking and `SendMessage` load shedding,
//!   decided from a call's headers.
//! - [`debug`]: `GET /debug/subscribers` and the SIGUSR2 dump.
//! - [`health`]: `grpc.health.v1.Health` as `health.proto` specifies (replaces
//!   tonic-health's server; Watch of an unknown service stays open).
//! - [`reflection`]: server reflection v1 and v1alpha as `reflection.proto`
//!   specifies (replaces tonic-reflection's server; answers carry transitive
//!   dependencies, unknown names get NOT_FOUND in the stream).
//! - [`auth`]: bearer-token auth of the messenger service: token table,
//!   constant-time lookup, SIGHUP reload, the interceptor.
//! - [`error`]: the server's one error type (validation, admission, auth,
//!   slow subscribers, shutdown) and its one conversion to `Status`.
//! - [`metrics`]: every exported metric: names, descriptions, buckets,
//!   handles; the `/metrics` endpoint.
//! - [`trace`]: the `fanout` and per-subscriber `deliver` spans.
//! - [`status_spec`]: transport- and codec-level statuses exactly as
//!   grpc/grpc `doc/statuscodes.md` has them (corrects tonic in one place).
//! - [`tls`]: the gRPC port's TLS identity and optional client CA (mTLS).
//! - [`app`]: `bind` reads the config files and assembles everything (health,
//!   reflection, messenger with its layers, listeners); `run_until_stopped`
//!   serves.
//! - [`shutdown`]: the ordered drain within the grace period.
//! - [`healthcheck`]: the `healthcheck` subcommand (container probe).
//!
//! Module dependencies point one way: `config` imports no other module;
//! `app` is the only one that knows them all.

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
pub mod shutdown;
pub mod status_spec;
pub mod tls;
pub mod trace;

pub use app::{App, AppError, ConfigError};
pub use config::Config;
