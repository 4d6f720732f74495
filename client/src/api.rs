//! The HTTP API as one service: the routes ([`crate::routes`]) and the
//! OpenAPI document that describes them ([`crate::openapi`]), under the
//! layers every request passes: the request deadline, the per-request span and metrics
//! ([`crate::observe`]), and a panic still answering JSON. The message
//! routes shed load past their cap ([`crate::limits::Admitted`]).
//!
//! It sits above both, so the document can name the handlers and the router
//! can serve the document without either importing the other.

use crate::limits::DeadlineLayer;
use crate::openapi::openapi_json;
use crate::routes::{
    AppState, get_and_flush_messages, healthz, method_not_allowed, metrics, not_found,
    panic_response, readyz, send_message,
};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    // The outer layers (outermost first), in one `layer` call per router:
    // each `Router::layer` boxes every route once more, and a request
    // clones every boxed level below the one it enters. The body limit only
    // sets what body extractors accept, so `/events` (no body) may sit under
    // it too.
    let outer = || {
        ServiceBuilder::new()
            .layer(crate::page::security_headers())
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(crate::observe::ObserveLayer)
            .layer(DefaultBodyLimit::max(state.max_body_bytes))
    };
    // The message routes shed load past `MESSENGER_HTTP_MAX_CONCURRENCY`
    // through their handlers' `limits::Admitted`, not a layer.
    let api = Router::new()
        .route("/sendMessage", post(send_message))
        .route("/getAndFlushMessages", post(get_and_flush_messages))
        .merge(crate::page::routes(state.page.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(outer().layer(DeadlineLayer::new(state.http_timeout)));
    // Without the deadline: a stream lives as long as its reader, kept open
    // by keep-alives, and is never shed (it has its own cap). Other methods
    // get the same JSON 405 as the API's routes.
    let events = Router::new()
        .route(
            "/events",
            get(crate::events::events).fallback(method_not_allowed),
        )
        .layer(outer());
    api.merge(events).with_state(state)
}
