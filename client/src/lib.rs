//! `messenger-client`: subscribes to the server's stream, buffers messages,
//! and serves the course's HTTP API.
//!
//! - [`config`]: flags and environment (`ENV_*`, `DEFAULT_*`).
//! - [`backend`]: the only module tree that sees proto types: [`backend::channel`]
//!   (the shared channel and token), [`backend::send`] (`SendMessage` with a
//!   deadline, behind the [`backend::MessageSender`] trait the routes call),
//!   [`backend::subscribe`] (the `ReadMessages` loop: backoff, reconnect,
//!   why-it-is-down state), [`backend::receive`] (stream to buffer) and
//!   [`backend::resume`] (resume position, dedup, gap reports).
//! - [`failure`]: why the stream is down (refused credentials, a TLS
//!   misconfiguration, a passing failure) and how that is logged and told to
//!   HTTP callers.
//! - [`buffer`]: bounded, ordered, atomically flushed message buffer.
//! - [`api`]: the axum router (`POST /sendMessage`, `POST /getAndFlushMessages`,
//!   `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json`) with
//!   its layers, over an [`routes::AppState`] that tests build around an
//!   in-memory sender; above both [`routes`] and [`openapi`].
//! - [`routes`]: the handlers: JSON in, backend and buffer calls, JSON out.
//! - [`paths`]: every route by method and path, as `--help` and the 404 list
//!   them; imports nothing, so [`error`] and [`config`] name the routes
//!   without importing the handlers.
//! - [`events`]: `GET /events`, the chat as Server-Sent Events: one
//!   resumable subscription of its own per stream ([`backend::tail`]), capped.
//! - [`trim`]: gives the heap that ended streams freed back to the system.
//! - [`page`]: `GET /` and its script and style, compiled in; the CSP and
//!   `nosniff` headers on every response.
//! - [`limits`]: request deadline and load shedding.
//! - [`origin`]: refuses a browser's cross-site request to the routes that
//!   change state (`Origin` checked against `Host`).
//! - [`openapi`]: the OpenAPI document, generated from the routes.
//! - [`error`]: the HTTP error type ([`error::ApiError`]) and its one `IntoResponse`.
//! - [`metrics`]: every exported metric: names, descriptions, buckets, handles.
//! - [`observe`]: per-request span, metrics and log line (a tower layer).
//! - [`healthcheck`]: the `healthcheck` subcommand (container probe).
//! - [`app`]: start-up order (subscribe, then bind), serving, shutdown.

pub mod api;
pub mod app;
pub mod backend;
pub mod buffer;
pub mod config;
pub mod error;
pub mod events;
pub mod failure;
pub mod healthcheck;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod origin;
pub mod page;
pub mod paths;
pub mod routes;
pub mod trim;

pub use app::{App, AppError};
pub use config::Config;
