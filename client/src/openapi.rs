//! The OpenAPI 3 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types, so it cannot
//! drift from the code. Served at `GET /openapi.json`.

use axum::Json;
use std::sync::LazyLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "messenger-client",
        description = "HTTP front of the messenger: send to the one chat, flush what the stream delivered, \
            watch it live (GET /events, Server-Sent Events; GET /, a page). \
            Every error is JSON `{\"error\": ...}` with a fitting status; every 503 carries Retry-After."
    ),
    paths(
        crate::routes::send_message,
        crate::routes::get_and_flush_messages,
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        crate::events::events,
        crate::page::index,
        crate::page::script,
        crate::page::style,
        crate::page::favicon,
    ),
    tags(
        (name = "messages", description = "The chat"),
        (name = "operations", description = "Probes and metrics; never shed under load"),
        (name = "page", description = "The chat in a browser: exactly as open as the rest of this API (a trusted-network port)"),
    )
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

pub(crate) async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOCUMENT)
}
