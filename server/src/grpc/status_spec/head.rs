//! The request head's checks, made before a call runs: its method, its
//! content-type and its deadline (gRPC PROTOCOL-HTTP2.md, "Requests").
//!
//! What each refusal is, and why:
//! - `:method` other than POST: HTTP 405 (`allow: POST`), `INTERNAL`, as
//!   grpc-go answers; tonic ran a `GET` like a `POST`.
//! - `content-type` that is not `application/grpc`, `application/grpc+…` or
//!   `application/grpc;…` (grpc-go's rule), or sent twice: HTTP 415, which PROTOCOL-HTTP2.md
//!   asks for so that a plain HTTP client cannot read a gRPC error (status
//!   200) as success, and `INVALID_ARGUMENT`, as grpc-go answers.
//! - `grpc-timeout` that is not 1 to 8 digits and one unit of H, M, S, m, u
//!   or n, or sent twice: `INTERNAL` (naming the count when repeated), as
//!   grpc-go answers; tonic ignored it and
//!   ran the call with no deadline. A zero one (grpc-java sends `0n` for a
//!   deadline that has passed) is `DEADLINE_EXCEEDED`: the caller has given
//!   up, so the call must not run.
//!
//! Invariant: caller input in a message is quoted by the one rule
//! (`messenger_proto::quote`).

use crate::grpc::error::ServiceError;
use http::{HeaderMap, StatusCode};
use messenger_proto::quote::quote_bytes;
use std::time::Duration;

/// Why a request is refused: the HTTP status and the gRPC error.
pub(super) type Refusal = (StatusCode, ServiceError);

/// The call's deadline (`None`: none asked for), or why it may not run.
pub(super) fn check<B>(request: &http::Request<B>) -> Result<Option<Duration>, Refusal> {
    if request.method() != http::Method::POST {
        let method = quote_bytes(request.method().as_str().as_bytes());
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            ServiceError::NotPost { method },
        ));
    }
    let mut content_types = request.headers().get_all(http::header::CONTENT_TYPE).iter();
    let content_type = content_types.next();
    let more = content_types.count();
    if more > 0 {
        let got = format!("sent {} times", more + 1);
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::NotGrpcContentType { got },
        ));
    }
    if !content_type.is_some_and(|v| is_grpc(v.as_bytes())) {
        let got = content_type.map_or_else(|| "none".to_owned(), |v| quote_bytes(v.as_bytes()));
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::NotGrpcContentType { got },
        ));
    }
    match grpc_timeout(request.headers()) {
        Ok(Some(Duration::ZERO)) => Err((StatusCode::OK, ServiceError::DeadlineExceeded)),
        Ok(timeout) => Ok(timeout),
        Err(error) => Err((StatusCode::OK, error)),
    }
}

/// `application/grpc`, alone or followed by `+subtype` or `;parameters`
/// (grpc-go's `ContentSubtype`; the type is case-insensitive, RFC 9110 §8.3.1).
fn is_grpc(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The caller's deadline from `grpc-timeout`; `Ok(None)` if absent.
fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ServiceError> {
    let mut values = headers.get_all("grpc-timeout").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = || ServiceError::MalformedTimeout {
        got: quote_bytes(value.as_bytes()),
    };
    let more = values.count();
    if more > 0 {
        return Err(ServiceError::RepeatedTimeout { count: more + 1 });
    }
    let text = value.to_str().map_err(|_| malformed())?;
    let split = text.len().checked_sub(1).ok_or_else(malformed)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let n: u64 = digits.parse().map_err(|_| malformed())?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(malformed()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tonic::Code;

    #[test]
    fn grpc_content_types_are_grpc_go_s() {
        for ok in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;x=1",
        ] {
            assert!(is_grpc(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "application/grpcx",
            "application/grpc-web",
            "text/plain",
            "application/json",
        ] {
            assert!(!is_grpc(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn grpc_timeout_units() {
        let parse = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            grpc_timeout(&h)
        };
        let ok = |v| parse(v).ok().flatten();
        assert_eq!(ok("200m"), Some(Duration::from_millis(200)));
        assert_eq!(ok("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(ok("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(ok("0n"), Some(Duration::ZERO));
        for bad in [
            "123456789S",
            "m",
            "10x",
            "5s",
            "+5S",
            "-1S",
            "1.5S",
            " 5S",
            "",
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.code(), Code::Internal, "{bad}");
            assert!(error.to_string().contains("grpc-timeout"), "{bad}: {error}");
        }
        let mut twice = HeaderMap::new();
        twice.append("grpc-timeout", HeaderValue::from_static("1S"));
        twice.append("grpc-timeout", HeaderValue::from_static("2S"));
        assert!(grpc_timeout(&twice).is_err());
        assert_eq!(grpc_timeout(&HeaderMap::new()).ok(), Some(None));
    }
}
