//! `GET /`: the chat page, with its script (`/app.js`) and style (`/app.css`)
//! as separate routes (no inline script or style: the CSP forbids them), all
//! compiled into the binary: no build step, no CDN. The page reads
//! [`/events`](crate::events) and posts to `/sendMessage`, so it is exactly
//! as open as the rest of the HTTP API: a trusted-network port. Pages of
//! other sites cannot post through a visitor's browser ([`crate::origin`]).
//!
//! Invariants:
//! - Every response of the client (API, page, errors) carries
//!   [`CONTENT_SECURITY_POLICY`] and `X-Content-Type-Options: nosniff`
//!   ([`security_headers`]).
//! - The only value put into the HTML is the trace viewer URL, escaped for
//!   an attribute; author and text reach the DOM only as text (`app.js`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tower::layer::util::Stack;
use tower_http::set_header::SetResponseHeaderLayer;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");
const TRACE_UI_PLACEHOLDER: &str = "{{TRACE_UI_URL}}";

/// Same-origin only, nothing inline, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The page as served: the HTML with the trace viewer URL filled in.
#[derive(Clone)]
pub struct Page {
    index: Arc<str>,
}

impl Page {
    /// `trace_ui_url`: each message's trace id is appended to it (no links when unset).
    pub fn new(trace_ui_url: Option<&str>) -> Self {
        let url = trace_ui_url.map(escape_attribute).unwrap_or_default();
        Self {
            index: INDEX.replace(TRACE_UI_PLACEHOLDER, &url).into(),
        }
    }

    /// The page's weight: HTML, script and style, in bytes.
    pub fn weight(&self) -> usize {
        self.index.len() + SCRIPT.len() + STYLE.len()
    }
}

/// `GET /`, `GET /app.js`, `GET /app.css`, `GET /favicon.ico`.
pub fn routes<S: Clone + Send + Sync + 'static>(page: Page) -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/favicon.ico", get(favicon))
        .with_state(page)
}

#[utoipa::path(get, path = "/", tag = "page",
    description = "The chat page (HTML). Its script and style are /app.js and /app.css.",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub(crate) async fn index(State(page): State<Page>) -> Response {
    no_cache(Html(page.index.to_string()).into_response())
}

#[utoipa::path(get, path = "/app.js", tag = "page",
    responses((status = 200, description = "The page's script", body = String, content_type = "text/javascript")))]
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[utoipa::path(get, path = "/app.css", tag = "page",
    responses((status = 200, description = "The page's style", body = String, content_type = "text/css")))]
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[utoipa::path(get, path = "/favicon.ico", tag = "page",
    responses((status = 204, description = "No icon (browsers ask for one)")))]
pub(crate) async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    no_cache(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Revalidated on every load, so a new binary's page is seen at once.
fn no_cache(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The layer that adds [`CONTENT_SECURITY_POLICY`] and `nosniff`.
pub type SecurityHeaders =
    Stack<SetResponseHeaderLayer<HeaderValue>, SetResponseHeaderLayer<HeaderValue>>;

/// Adds the CSP and `nosniff` to every response (outermost layer), replacing
/// any a handler set. Plain tower layers: a request allocates nothing for
/// them (an `axum::middleware::from_fn` boxes its future and its inner
/// service per request).
pub fn security_headers() -> SecurityHeaders {
    Stack::new(
        SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    )
}

fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_url_is_an_escaped_attribute_and_nothing_is_inline() {
        let page = Page::new(Some(r#"http://x/"><script>alert(1)</script>"#));
        assert!(!page.index.contains("<script>alert"), "{}", page.index);
        assert!(page.index.contains("&quot;&gt;&lt;script&gt;"));
        assert!(!page.index.contains(TRACE_UI_PLACEHOLDER));
        let empty = Page::new(None);
        assert!(
            empty
                .index
                .contains(r#"name="messenger-trace-ui" content="""#)
        );
        for html in [&*page.index, &*empty.index] {
            assert!(!html.contains("<style"), "no inline style");
            assert!(!html.contains(" style="), "no inline style attribute");
            assert_eq!(
                html.matches("<script").count(),
                1,
                "the one external script"
            );
            assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
            assert!(!html.contains(" on"), "no inline handler");
        }
    }
}
