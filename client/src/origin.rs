//! Refuses cross-site requests to the routes that change state:
//! `POST /sendMessage` (posts as this client) and `POST /getAndFlushMessages`
//! (empties the buffer).
//!
//! The body is read as JSON whatever its `Content-Type` (so `curl -d` works,
//! proto/CONTRACT.md). A page on any other site can therefore make a browser
//! post `text/plain` JSON to a client on `localhost`: a "simple" request in
//! the Fetch standard's terms, with no CORS preflight to stop it. What a
//! browser always adds to a cross-origin POST is an `Origin` header (Fetch
//! standard, "append a request `Origin` header"), and that is what is checked,
//! as the OWASP CSRF cheat sheet's "verifying origin with standard headers".
//!
//! The rule ([`SameOrigin`]):
//! - no `Origin`: allowed. curl, scripts and the course's tests send none;
//! - an `Origin` whose host and port are the request's own (its `Host`, or
//!   the HTTP/2 authority): allowed. That is the client's own page (`GET /`);
//! - any other `Origin`, `null` (a sandboxed frame, a `file:` page) included:
//!   403, naming the origin and the host it was compared with.
//!
//! Ports are compared with the scheme's default filled in (`http://h` is
//! `h:80`); hosts case-insensitively (RFC 3986 §3.2.2). A proxy that rewrites
//! `Host` in front of the page would need to keep it, or be reached without
//! one of the browser's pages in between.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;

/// Proof that a request is not cross-site (see the module docs).
#[derive(Debug)]
pub struct SameOrigin;

impl<S: Send + Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(origin) = parts.headers.get(ORIGIN) else {
            return Ok(Self);
        };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        if same_origin(&origin, &host) {
            Ok(Self)
        } else {
            Err(ApiError::CrossOrigin { origin, host })
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the authority `host`
/// (`host[:port]`, the request's `Host`).
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    match (split_port(authority, default_port), split_port(host, 80)) {
        (Some((oh, op)), Some((hh, hp))) => op == hp && oh.eq_ignore_ascii_case(hh),
        _ => false,
    }
}

/// `host[:port]` (an IPv6 host in brackets) as host and port, the port
/// defaulted; `None` if the port is not a number or the host is empty.
fn split_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, default_port),
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn the_page_s_own_origin_matches_its_host() {
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://LocalHost:8080", "localhost:8080"),
            ("http://localhost", "localhost"),
            ("http://localhost", "localhost:80"),
            ("http://[::1]:8080", "[::1]:8080"),
            ("https://chat.example", "chat.example:443"),
        ] {
            assert!(same_origin(origin, host), "{origin} vs {host}");
        }
    }

    #[test]
    fn another_site_a_null_origin_or_another_port_do_not() {
        for (origin, host) in [
            ("https://evil.example", "127.0.0.1:8080"),
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("https://127.0.0.1:8080", "127.0.0.1:80"),
            ("http://localhost", "localhost:8080"),
            ("null", "127.0.0.1:8080"),
            ("file://", "127.0.0.1:8080"),
            ("ftp://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", ""),
            ("http://127.0.0.1:x", "127.0.0.1:8080"),
            ("http://[::1]:8080", "[::2]:8080"),
        ] {
            assert!(!same_origin(origin, host), "{origin} vs {host}");
        }
    }
}
