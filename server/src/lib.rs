//! `messenger-server`: one chat, fanned out to every `ReadMessages` stream.
//!
//! Four layers, one folder each; dependencies point down this list, never up:
//!
//! - [`app`] (`app/`): the assembly. `config` (flags and environment:
//!   `ENV_*`, `DEFAULT_*`; parsing only), `tls` (the gRPC port's identity and
//!   optional client CA), `bind`/`run_until_stopped` (reads the config files
//!   once and builds everything), `shutdown` (the ordered drain within the
//!   grace period). The only layer that knows all the others.
//! - [`grpc`] (`grpc/`): the gRPC surface. `service` (`mes_grpc.MessengerServer`,
//!   mapping proto to the core), `health` and `reflection` (the protocols as
//!   their `.proto`s specify), `status_spec` (transport statuses as grpc/grpc
//!   has them), `auth` (bearer tokens), `admission` (in-flight tracking,
//!   `SendMessage` shedding), `error` (the one error type and its one
//!   conversion to `Status`).
//! - [`ops`] (`ops/`): operations. `metrics` (every exported series and
//!   `/metrics`), `trace` (the `fanout`, `deliver` and broker spans),
//!   `debug` (`GET /debug/subscribers`, SIGUSR2), `healthcheck` (the
//!   container probe subcommand).
//! - [`core`] (`core/`): the chat itself, knowing nothing about gRPC.
//!   `hub` (fan-out: total order, bounded queues, resume without a seam, the
//!   slow-subscriber policy), `history` (offsets, epoch, `sendTime` and the
//!   bounded in-memory log below the hub), `broker` (the Redis Streams
//!   engine: replicas share one chat), `resume` (the resume protocol's
//!   request metadata and response headers).
//!
//! The core is where the chat's invariants live (`core/hub.rs` states them
//! first); the gRPC surface and operations code are replaceable rooms around
//! it.

pub mod app;
pub mod core;
pub mod grpc;
pub mod ops;

pub use app::config::Config;
pub use app::{App, AppError, ConfigError};
