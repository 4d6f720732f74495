//! The error statuses of [`router`](crate::api::router), one test per
//! status and per bad-body kind: each asserts the status, the
//! `{"error": ...}` body and the headers that go with it.

use super::*;

/// 400 with the expected shape spelled out, and nothing reached the server.
async fn assert_bad_body(body: impl Into<Body>, why: &str) {
    let c = client(Answer::Accept, |_| {});
    let r = c.send(body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = r.error();
    assert!(message.contains(why), "{message}");
    assert!(message.ends_with(EXPECTED_BODY), "{message}");
    assert_eq!(c.calls(), 0);
}

#[tokio::test]
async fn send_400_malformed_json() {
    assert_bad_body(r#"{"author":"#, "invalid request body").await;
}

#[tokio::test]
async fn send_400_missing_field() {
    assert_bad_body(r#"{"author":"a"}"#, "missing field `text`").await;
}

#[tokio::test]
async fn send_400_wrong_type() {
    assert_bad_body(r#"{"author":"a","text":5}"#, "invalid type").await;
}

#[tokio::test]
async fn send_400_invalid_utf8() {
    assert_bad_body(
        &b"{\"author\":\"\xc3\x28\",\"text\":\"b\"}"[..],
        "invalid request body",
    )
    .await;
}

#[tokio::test]
async fn send_400_excessive_nesting() {
    let deep = format!(
        r#"{{"author":"a","text":"b","x":{}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_bad_body(deep, "nesting is deeper than 32").await;
}

#[tokio::test]
async fn send_400_not_an_object_or_empty() {
    assert_bad_body(r#"["a","b"]"#, "not a JSON object").await;
    assert_bad_body("  ", "request body is empty").await;
}

#[tokio::test]
async fn send_400_when_the_server_finds_a_field_invalid() {
    let c = client(Answer::Refuse(Code::InvalidArgument), |_| {});
    let r = c.send(GOOD).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("InvalidArgument"));
}

/// 401 and 403: from the server's answer to the send, and from a refused
/// subscription (then nothing is sent).
async fn assert_credentials_refused(code: Code, want: StatusCode) {
    let c = client(Answer::Refuse(code), |_| {});
    assert_eq!(c.send(GOOD).await.status, want);
    c.subscribed.send_replace(false);
    c.down.send_replace(Some(Down::Refused {
        code,
        message: "bad token".into(),
    }));
    let r = c.send(GOOD).await;
    assert_eq!(r.status, want);
    assert!(r.error().contains("bad token"));
    assert_eq!(c.calls(), 1);
}

#[tokio::test]
async fn send_401_when_the_server_refuses_the_token() {
    assert_credentials_refused(Code::Unauthenticated, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn send_403_when_the_token_may_not_post() {
    assert_credentials_refused(Code::PermissionDenied, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn unknown_route_404() {
    let c = client(Answer::Accept, |_| {});
    let r = c.call(Method::POST, "/nope", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.error().contains(r#"no route for "POST" "/nope""#),
        "{}",
        r.error()
    );
}

#[tokio::test]
async fn wrong_method_405_names_the_allowed_one() {
    let c = client(Answer::Accept, |_| {});
    for (method, path, allow) in [
        (Method::GET, "/sendMessage", "POST"),
        (Method::GET, "/getAndFlushMessages", "POST"),
        (Method::POST, "/readyz", "GET,HEAD"),
    ] {
        let r = c.call(method.clone(), path, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.headers[header::ALLOW], allow, "{method} {path}");
        let says = format!("method \"{method}\" is not allowed on \"{path}\"");
        assert!(r.error().contains(&says), "{}", r.error());
    }
}

#[tokio::test]
async fn send_413_over_the_body_limit() {
    let c = client(Answer::Accept, |s| s.max_body_bytes = 64);
    let r = c.send(vec![b' '; 65]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("64-byte limit"), "{}", r.error());
    // Like the server's 400 for a long text names its variable.
    assert!(
        r.error().contains("MESSENGER_MAX_BODY_BYTES"),
        "{}",
        r.error()
    );
    assert_eq!(c.calls(), 0);
}

/// A flush's body is ignored, but not past the limit every body has: the
/// caller learns so, and nothing is flushed (a 2 MB body used to flush).
#[tokio::test]
async fn flush_413_over_the_body_limit_leaves_the_buffer() {
    let c = client(Answer::Accept, |s| s.max_body_bytes = 64);
    c.buffer.push(BufferedMessage {
        author: "a".into(),
        text: "kept".into(),
        send_time: SEND_TIME.into(),
    });
    let flush = |body: Vec<u8>| c.call(Method::POST, "/getAndFlushMessages", &[], body);
    let r = flush(vec![b' '; 65]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.error().contains("MESSENGER_MAX_BODY_BYTES"),
        "{}",
        r.error()
    );
    assert!(!c.buffer.is_empty(), "nothing flushed");
    let r = flush(b"{}".to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(c.buffer.is_empty());
}

fn assert_retry_later(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.retry_after(), Some(RETRY_AFTER_SECS.to_string().as_str()));
    r.error()
}

#[tokio::test]
async fn send_503_while_not_subscribed_and_readyz_agrees() {
    let c = client(Answer::Accept, |_| {});
    let ready = c.call(Method::GET, "/readyz", &[], Body::empty()).await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status": "ready"}))
    );
    c.subscribed.send_replace(false);
    assert!(assert_retry_later(&c.send(GOOD).await).contains("not subscribed"));
    assert_eq!(c.calls(), 0);
    let r = c.call(Method::GET, "/readyz", &[], Body::empty()).await;
    assert!(assert_retry_later(&r).contains("not subscribed"));
}

#[tokio::test]
async fn send_503_when_the_server_is_unreachable_or_exhausted() {
    let c = client(Answer::Unreachable, |_| {});
    assert!(assert_retry_later(&c.send(GOOD).await).contains("unreachable"));
    let c = client(Answer::Refuse(Code::ResourceExhausted), |_| {});
    assert!(assert_retry_later(&c.send(GOOD).await).contains("ResourceExhausted"));
}

/// A server that answers `UNAVAILABLE` itself (its broker is down) is
/// reachable: the 503 says "unavailable" and passes on what it named, rather
/// than calling the server unreachable.
#[tokio::test]
async fn send_503_when_the_server_answers_unavailable_names_its_reason() {
    let c = client(Answer::BrokerDown, |_| {});
    let body = assert_retry_later(&c.send(GOOD).await);
    assert!(
        body.contains("is unavailable: broker redis://") && !body.contains("unreachable"),
        "{body}"
    );
}

#[tokio::test]
async fn send_503_sheds_load_but_probes_still_answer() {
    let c = client(Answer::Hang, |s| {
        s.in_flight = crate::limits::InFlight::new(1)
    });
    let router = c.router.clone();
    let request = Request::post("/sendMessage")
        .body(Body::from(GOOD))
        .unwrap();
    let stuck = tokio::spawn(router.oneshot(request));
    let mut calls = c.server.calls.subscribe();
    tokio::time::timeout(BOUND, calls.wait_for(|calls| calls.len() == 1))
        .await
        .expect("the first send reached the server")
        .unwrap();
    let r = c
        .call(Method::POST, "/getAndFlushMessages", &[], Body::empty())
        .await;
    assert!(assert_retry_later(&r).contains(crate::config::ENV_HTTP_MAX_CONCURRENCY));
    let health = c.call(Method::GET, "/healthz", &[], Body::empty()).await;
    assert_eq!(
        (health.status, health.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    stuck.abort();
}

#[tokio::test]
async fn send_504_when_the_server_misses_the_send_deadline() {
    let c = client(Answer::DeadlineExceeded, |_| {});
    let r = c.send(GOOD).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.error().contains("did not answer within"));
}

#[tokio::test]
async fn send_504_when_the_request_deadline_passes() {
    let c = client(Answer::Hang, |s| s.http_timeout = Duration::from_millis(50));
    let r = c.send(GOOD).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.error().contains(crate::config::ENV_HTTP_TIMEOUT_MS));
}

#[tokio::test]
async fn send_502_when_the_server_answers_nonsense() {
    for answer in [Answer::NoSendTime, Answer::Refuse(Code::Internal)] {
        let r = client(answer, |_| {}).send(GOOD).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert!(r.error().contains("messenger server"));
    }
}

#[tokio::test]
async fn a_handler_panic_is_a_json_500() {
    let r = client(Answer::Panic, |_| {}).send(GOOD).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.error().contains("panicked"));
}
