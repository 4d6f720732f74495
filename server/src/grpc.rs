//! The gRPC surface: everything a caller on the gRPC port talks to.
//!
//! - [`service`]: `mes_grpc.MessengerServer`, mapping proto to the core;
//!   validation by the wire's field limits ([`messenger_proto::limits`]).
//! - [`admission`]: authentication, in-flight tracking and `SendMessage`
//!   load shedding, decided from a call's headers; refusals are counted.
//! - [`tally`]: every messenger call counted once in `grpc_server_*`, also
//!   one that ends before its handler runs.
//! - [`auth`]: bearer-token auth of the messenger service: token table,
//!   constant-time lookup, SIGHUP reload.
//! - [`health`]: `grpc.health.v1.Health` as `health.proto` specifies (replaces
//!   tonic-health's server; Watch of an unknown service stays open).
//! - [`reflection`]: server reflection v1 and v1alpha as `reflection.proto`
//!   specifies (replaces tonic-reflection's server; answers carry transitive
//!   dependencies, unknown names get NOT_FOUND in the stream).
//! - [`status_spec`]: transport- and codec-level statuses exactly as
//!   grpc/grpc `doc/statuscodes.md` has them (corrects tonic in one place).
//! - [`error`]: the server's one error type (validation, admission, auth,
//!   slow subscribers, shutdown) and its one conversion to `Status`.

pub(crate) mod admission;
pub mod auth;
pub(crate) mod error;
pub mod health;
pub(crate) mod reflection;
pub(crate) mod service;
pub(crate) mod status_spec;
pub(crate) mod tally;
