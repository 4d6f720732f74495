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
//! The rules ([`SameOrigin`]), which apply only to a request with `Origin`:
//! - no `Origin`: allowed. curl, scripts and the course's tests send none;
//! - more than one `Origin`: refused (a browser sends one);
//! - an `Origin` whose host and port are not the request's own (its `Host`,
//!   or the HTTP/2 authority), `null` included (a sandboxed frame, a `file:`
//!   page): refused. A `Host` without a port takes the default port of the
//!   `Origin`'s scheme (RFC 9110 §7.2), as a browser leaves `:443` out for
//!   `https` behind a proxy; hosts compare case-insensitively (RFC 3986
//!   §3.2.2);
//! - the same origin, but a host name the client does not answer browsers
//!   on: refused. That is DNS rebinding: a page served as
//!   `evil.example:8080` whose name then resolves to 127.0.0.1 is "same
//!   origin" to the browser. Allowed are IP addresses (no name to rebind),
//!   `localhost` and `*.localhost` (RFC 6761 §6.3: never resolved by DNS),
//!   and the names in `MESSENGER_HTTP_ALLOWED_HOSTS` ([`AllowedHosts`]), as
//!   webpack-dev-server's and Vite's allowed hosts do.
//!
//! A refusal is 403, naming the origin or the host and what to do.

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;

/// Host names browsers may use beyond IP addresses and `localhost`:
/// lowercase, without a trailing dot.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Arc<[String]>);

impl AllowedHosts {
    pub fn new(names: &[String]) -> Self {
        Self(names.iter().map(|n| normalize(n)).collect())
    }

    /// Whether a browser may reach this client as `host` (no port).
    fn allows(&self, host: &str) -> bool {
        let name = normalize(host);
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name);
        bare.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.0.contains(&name)
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `MESSENGER_HTTP_ALLOWED_HOSTS`'s parser: one host name, without scheme,
/// port or path.
pub fn parse_host_name(s: &str) -> Result<String, String> {
    let name = normalize(s);
    if name.is_empty() || name.contains([':', '/', '@', ' ']) {
        return Err(format!(
            "{s:?}: expected a host name like chat.example, without scheme, port or path"
        ));
    }
    Ok(name)
}

/// Proof that a request is not cross-site (see the module docs).
#[derive(Debug)]
pub struct SameOrigin;

impl<S> FromRequestParts<S> for SameOrigin
where
    AllowedHosts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut origins = parts.headers.get_all(ORIGIN).iter();
        let Some(first) = origins.next() else {
            return Ok(Self);
        };
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        let origin = String::from_utf8_lossy(first.as_bytes()).into_owned();
        if origins.next().is_some() {
            return Err(ApiError::CrossOrigin {
                origin: format!("{origin}, …"),
                host,
            });
        }
        let Some(name) = same_origin(&origin, &host) else {
            return Err(ApiError::CrossOrigin { origin, host });
        };
        if AllowedHosts::from_ref(state).allows(name) {
            Ok(Self)
        } else {
            Err(ApiError::HostNotAllowed { host })
        }
    }
}

/// The host name of `host` (`host[:port]`, the request's `Host`) when
/// `origin` (`scheme://host[:port]`) names it; `None` when it does not.
fn same_origin<'a>(origin: &str, host: &'a str) -> Option<&'a str> {
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (oh, op) = split_port(authority, default_port)?;
    let (hh, hp) = split_port(host, default_port)?;
    (op == hp && oh.eq_ignore_ascii_case(hh)).then_some(hh)
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
    use super::{AllowedHosts, parse_host_name, same_origin};

    #[test]
    fn the_page_s_own_origin_matches_its_host() {
        for (origin, host, name) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080", "127.0.0.1"),
            ("http://LocalHost:8080", "localhost:8080", "localhost"),
            ("http://localhost", "localhost", "localhost"),
            ("http://localhost", "localhost:80", "localhost"),
            ("http://[::1]:8080", "[::1]:8080", "[::1]"),
            ("https://chat.example", "chat.example:443", "chat.example"),
            // Behind a TLS proxy on 443 the browser sends no port in Host.
            ("https://chat.example", "chat.example", "chat.example"),
        ] {
            assert_eq!(same_origin(origin, host), Some(name), "{origin} vs {host}");
        }
    }

    #[test]
    fn another_site_a_null_origin_or_another_port_do_not() {
        for (origin, host) in [
            ("https://evil.example", "127.0.0.1:8080"),
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("https://127.0.0.1:8080", "127.0.0.1:80"),
            ("http://localhost", "localhost:8080"),
            ("http://chat.example", "chat.example:443"),
            ("null", "127.0.0.1:8080"),
            ("file://", "127.0.0.1:8080"),
            ("ftp://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", ""),
            ("http://127.0.0.1:x", "127.0.0.1:8080"),
            ("http://[::1]:8080", "[::2]:8080"),
        ] {
            assert_eq!(same_origin(origin, host), None, "{origin} vs {host}");
        }
    }

    #[test]
    fn browsers_may_use_ip_addresses_localhost_and_the_configured_names_only() {
        let allowed = AllowedHosts::new(&["Chat.Example.".to_owned()]);
        for host in [
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "localhost",
            "LOCALHOST.",
            "app.localhost",
            "chat.example",
            "CHAT.example.",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in ["evil.example", "localhost.evil.example", "example", "[::1"] {
            assert!(!allowed.allows(host), "{host}");
        }
        assert!(!AllowedHosts::default().allows("chat.example"));
    }

    #[test]
    fn an_allowed_host_is_a_bare_name() {
        assert_eq!(
            parse_host_name(" Chat.Example. "),
            Ok("chat.example".to_owned())
        );
        for bad in ["", "chat.example:443", "https://chat.example", "a/b", "u@h"] {
            assert!(parse_host_name(bad).is_err(), "{bad:?}");
        }
    }
}
