//! The HTTP API's routes by method and path: what `--help` and the 404 list.
//! It imports nothing of this crate, so the error type ([`crate::error`]) and
//! the configuration ([`crate::config`]) can name the routes without
//! importing the handlers ([`crate::routes`]), which import them.

/// Every route [`router`](crate::api::router) serves, as `--help` and the 404 list them (a test,
/// `routes/tests/listed.rs`, holds them to the router and to `/openapi.json`).
pub const ROUTES: [(&str, &str); 11] = [
    ("POST", "/sendMessage"),
    ("POST", "/getAndFlushMessages"),
    ("GET", "/events"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
    ("GET", "/favicon.ico"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// [`ROUTES`] as `POST /sendMessage, ...`.
pub fn routes_line() -> String {
    let routes: Vec<String> = ROUTES.iter().map(|(m, p)| format!("{m} {p}")).collect();
    routes.join(", ")
}
