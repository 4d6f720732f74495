//! `messenger-server`: one chat, fanned out to every `ReadMessages` stream.
//!
//! Four layers, one folder each:
//!
//! - [`app`] (`app/`): the assembly. `config` (flags and environment:
//!   `ENV_*`, `DEFAULT_*`; parsing only), `tls` (the gRPC port's identity and
//!   optional client CA), `bind`/`run_until_stopped` (reads the config files
//!   once and builds everything, with the builders of `build`), `shutdown` (the ordered drain within the
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
//! - [`core`] (`core/`): the chat itself. `publish` (the one seam a send
//!   goes through, chosen once at bind), `fanout` (the hub with the
//!   bookkeeping after every publish, and the broker's one way in), `hub` (fan-out: total order, bounded queues, resume without a
//!   seam, the slow-subscriber policy), `history` (offsets, epoch, `sendTime`
//!   and the bounded in-memory log below the hub), `broker` (the Redis
//!   Streams engine: replicas share one chat), `resume` (the resume
//!   protocol's request metadata and response headers).
//!
//! The core is where the chat's invariants live (`core/hub.rs` states them
//! first); the gRPC surface and operations code are replaceable rooms around
//! it. Dependencies that hold:
//! - `history` imports no other module; the `hub` imports only `history`,
//!   and carries telemetry as an opaque [`core::hub::MessageTrace`].
//! - The broker sits above the hub and reaches it only through the ingest
//!   path of `core::fanout` (`Fanout::ingest`); `core::publish`, above both,
//!   is the only module that names both publishers.
//! - Only `app` reads [`Config`] or a `DEFAULT_*`: it turns them into each
//!   part's typed settings. Other modules name `ENV_*` variables in their
//!   messages only.
//! - Only `app` knows which engine runs: it picks the publisher at bind.

pub mod app;
pub mod core;
pub mod grpc;
pub mod ops;

pub use app::config::Config;
pub use app::{App, AppError, ConfigError};
