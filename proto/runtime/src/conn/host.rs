//! The `Host` check of every HTTP/1 request on every listener that
//! [`super::serve_http`] runs (the client's API and `/metrics`, the server's
//! `/metrics`), before any route sees it.
//!
//! Invariants (RFC 9112 §3.2, RFC 9110 §7.2; hyper leaves this to us,
//! hyperium/hyper#3777):
//! - an HTTP/1.1 request without a `Host` is refused; HTTP/1.0 may omit it;
//! - a request of any HTTP/1 version with more than one `Host` line, or one
//!   whose value is not `host[:port]` (RFC 3986 `uri-host`, a port of at most
//!   65535), is refused;
//! - a refused request gets 400 and `{"error": "<what is wrong and what to do>"}`
//!   (the client API's error shape, used on every listener) and its
//!   connection is closed; the error repeats the value only through
//!   [`quote`] (at most 64 characters, a cut marked);
//! - HTTP/2 requests pass untouched: `:authority` is out of scope here.

use axum::body::Body;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use messenger_proto::quote::quote;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Service;

/// Why a request's `Host` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error(
        "the request has no Host header; an HTTP/1.1 request must carry exactly one \
         (RFC 9112 §3.2), e.g. Host: 127.0.0.1:8080"
    )]
    Missing,
    #[error(
        "the request has {0} Host headers; send exactly one (RFC 9112 §3.2), e.g. Host: 127.0.0.1:8080"
    )]
    Repeated(usize),
    #[error(
        "Host {} is not host[:port]: {why} (RFC 9110 §7.2), e.g. Host: 127.0.0.1:8080",
        quote(.value)
    )]
    Invalid { value: String, why: String },
}

/// Checks `headers` of a request of `version`: see the module docs.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), HostError> {
    if version != Version::HTTP_10 && version != Version::HTTP_11 {
        return Ok(());
    }
    let mut values = headers.get_all(HOST).iter();
    let Some(value) = values.next() else {
        return if version == Version::HTTP_10 {
            Ok(())
        } else {
            Err(HostError::Missing)
        };
    };
    let extra = values.count();
    if extra > 0 {
        return Err(HostError::Repeated(extra + 1));
    }
    let invalid = |why: String| HostError::Invalid {
        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        why,
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("it is not visible ASCII".to_owned()))?;
    validate(text).map_err(invalid)
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3), the port at most 65535.
/// An empty value is valid: it is what a client sends for a target URI
/// without an authority (RFC 9112 §3.2).
fn validate(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (literal, after) = rest
            .split_once(']')
            .ok_or("an IPv6 literal must end with ']'")?;
        literal
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{} is not an IPv6 address", quote(literal)))?;
        match after {
            "" => return Ok(()),
            _ => (
                "",
                after
                    .strip_prefix(':')
                    .ok_or("only :port may follow an IPv6 literal")?,
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, port),
            None => (host, ""),
        }
    };
    if let Some(bad) = name.chars().find(|c| !is_reg_name_char(*c)) {
        return Err(format!("{bad:?} is not allowed in a host name"));
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(format!("port {} is not a number in 0..=65535", quote(port)));
    }
    Ok(())
}

/// RFC 3986 `reg-name` characters: unreserved, sub-delims and `%` (of a
/// pct-encoded octet); an IPv4 address is one too.
fn is_reg_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%".contains(c)
}

/// Serves `inner` behind [`check`]: a refused request never reaches it.
#[derive(Debug, Clone)]
pub struct RequireHost<S> {
    inner: S,
}

impl<S> RequireHost<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for RequireHost<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check(request.version(), request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(e) => {
                tracing::debug!(error = %e, "request refused: bad Host");
                let response = refusal(&e);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// 400 with `{"error": ...}`, closing the connection.
fn refusal(error: &HostError) -> Response<Body> {
    let body = serde_json::json!({ "error": error.to_string() }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for h in hosts {
            map.append(HOST, HeaderValue::from_bytes(h).unwrap());
        }
        map
    }

    fn check11(hosts: &[&[u8]]) -> Result<(), HostError> {
        check(Version::HTTP_11, &headers(hosts))
    }

    #[test]
    fn valid_hosts_pass() {
        for host in [
            &b"127.0.0.1:8080"[..],
            b"localhost",
            b"example.com:80",
            b"[::1]:51075",
            b"[::1]",
            b"my-host_1.local:",
            b"",
            b"a%20b",
        ] {
            assert_eq!(
                check11(&[host]),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn missing_repeated_and_invalid_hosts_are_refused() {
        assert_eq!(check11(&[]), Err(HostError::Missing));
        assert_eq!(check11(&[b"a", b"a"]), Err(HostError::Repeated(2)));
        for (host, why) in [
            (&b"a b"[..], "' ' is not allowed"),
            (b"x:notaport", "port \"notaport\" is not a number"),
            (b"x:65536", "port \"65536\" is not a number in 0..=65535"),
            (b"x:-1", "port \"-1\""),
            (b"a/b", "'/' is not allowed"),
            (b"user@host", "'@' is not allowed"),
            (b"[::1", "must end with ']'"),
            (b"[zz]:1", "is not an IPv6 address"),
            (b"[::1]x", "only :port may follow"),
            (b"h\xc3\xa9", "not visible ASCII"),
        ] {
            let e = check11(&[host]).unwrap_err().to_string();
            assert!(e.contains(why), "{host:?}: {e}");
        }
    }

    /// A field report's kind: caller input repeated without a bound.
    #[test]
    fn a_long_host_is_quoted_cut() {
        for host in [
            format!("{} b", "a".repeat(20_000)),
            format!("x:{}", "9".repeat(20_000)),
            format!("[{}]", ":".repeat(20_000)),
        ] {
            let e = check11(&[host.as_bytes()]).unwrap_err().to_string();
            assert!(e.len() < 600, "{} bytes: {e}", e.len());
            assert!(e.contains(&format!("… ({} bytes)", host.len())), "{e}");
        }
    }

    #[test]
    fn http10_may_omit_host_and_http2_is_not_checked() {
        assert_eq!(check(Version::HTTP_10, &headers(&[])), Ok(()));
        assert!(check(Version::HTTP_10, &headers(&[b"a", b"b"])).is_err());
        assert!(check(Version::HTTP_10, &headers(&[b"a b"])).is_err());
        assert_eq!(check(Version::HTTP_2, &headers(&[])), Ok(()));
    }
}
