//! [`router`] driven with `tower::ServiceExt::oneshot`, as in the axum
//! examples: no socket, no server process. The one stand-in is [`Server`],
//! an in-memory [`MessageSender`] that plays the server's answers to
//! `SendMessage`; the router, its layers, the buffer and the error mapping
//! are the production code. One test per status (and per bad-body kind).

use super::*;
use crate::backend::{MessageSender, Refusal, SendFuture};
use crate::error::{EXPECTED_BODY, RETRY_AFTER_SECS};
use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceExt;

const SEND_TIME: &str = "2021-09-12T10:25:22.454093428Z";
/// Upper bound on any one request; a hang fails the test instead of stalling it.
const BOUND: Duration = Duration::from_secs(5);

/// How the fake server answers every `SendMessage`.
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    Refuse(Code),
    Unreachable,
    DeadlineExceeded,
    NoSendTime,
    /// Never answers (a stuck server).
    Hang,
    /// A bug in our own code path: the handler panics.
    Panic,
}

/// The server side, in memory: answers with `answer` and counts the calls.
struct Server {
    answer: Answer,
    calls: watch::Sender<Vec<(String, String)>>,
}

impl MessageSender for Server {
    fn send(&self, author: String, text: String) -> SendFuture<'_> {
        self.calls.send_modify(|calls| calls.push((author, text)));
        let answer = self.answer;
        Box::pin(async move {
            let rejected = |code| BackendError::Rejected {
                code,
                message: format!("the server said {code:?}"),
            };
            match answer {
                Answer::Accept => Ok(SEND_TIME.to_owned()),
                Answer::Refuse(code) => Err(rejected(code)),
                Answer::Unreachable => Err(BackendError::Unavailable {
                    addr: "127.0.0.1:1".into(),
                    message: "connection refused".into(),
                }),
                Answer::DeadlineExceeded => Err(BackendError::Timeout(Duration::from_millis(5))),
                Answer::NoSendTime => Err(BackendError::BadResponse),
                Answer::Hang => std::future::pending().await,
                Answer::Panic => panic!("fake handler bug"),
            }
        })
    }
}

struct Client {
    router: Router,
    server: Arc<Server>,
    buffer: Arc<Buffer>,
    subscribed: watch::Sender<bool>,
    refused: watch::Sender<Refusal>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Asserts `{"error": "<non-empty>"}` as JSON, and returns the message.
    fn error(&self) -> String {
        let content_type = self.headers.get(header::CONTENT_TYPE);
        assert_eq!(content_type.unwrap(), "application/json");
        let body = self.json();
        let object = body.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{body}");
        let message = body["error"].as_str().expect("a string error").to_owned();
        assert!(!message.is_empty());
        message
    }

    fn retry_after(&self) -> Option<&str> {
        let value = self.headers.get(header::RETRY_AFTER)?;
        Some(value.to_str().unwrap())
    }
}

/// A subscribed client whose server answers `answer`; `tweak` adjusts limits.
fn client(answer: Answer, tweak: impl FnOnce(&mut AppState)) -> Client {
    let server = Arc::new(Server {
        answer,
        calls: watch::Sender::new(Vec::new()),
    });
    let buffer = Arc::new(Buffer::new(16));
    let (subscribed, subscribed_rx) = watch::channel(true);
    let (refused, refused_rx) = watch::channel(None);
    let mut state = AppState {
        backend: server.clone(),
        buffer: Arc::clone(&buffer),
        subscribed: subscribed_rx,
        refused: refused_rx,
        max_body_bytes: 1024,
        exporter: messenger_runtime::metrics::install(&crate::metrics::buckets()),
        http_timeout: BOUND,
        max_in_flight: 8,
    };
    tweak(&mut state);
    Client {
        router: router(state),
        server,
        buffer,
        subscribed,
        refused,
    }
}

impl Client {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.into()).unwrap();
        let call = self.router.clone().oneshot(request);
        let response = tokio::time::timeout(BOUND, call)
            .await
            .expect("answered")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn send(&self, body: impl Into<Body>) -> Reply {
        let json = [("content-type", "application/json")];
        self.call(Method::POST, "/sendMessage", &json, body).await
    }

    fn calls(&self) -> usize {
        self.server.calls.borrow().len()
    }
}

const GOOD: &str = r#"{"author": "alice", "text": "hi"}"#;

#[tokio::test]
async fn send_200_returns_the_servers_send_time() {
    let c = client(Answer::Accept, |_| {});
    let r = c.send(GOOD).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "sendTime": SEND_TIME }));
    assert_eq!(*c.server.calls.borrow(), [("alice".into(), "hi".into())]);
}

#[tokio::test]
async fn send_200_reads_json_whatever_the_content_type() {
    let c = client(Answer::Accept, |_| {});
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let headers = [("content-type", content_type)];
        let r = c.call(Method::POST, "/sendMessage", &headers, GOOD).await;
        assert_eq!(r.status, StatusCode::OK, "{content_type}");
    }
    let r = c.call(Method::POST, "/sendMessage", &[], GOOD).await;
    assert_eq!(r.status, StatusCode::OK, "no content type");
    assert_eq!(c.calls(), 3);
}

#[tokio::test]
async fn flush_200_returns_the_buffer_in_order_and_empties_it() {
    let c = client(Answer::Accept, |_| {});
    for text in ["one", "two"] {
        c.buffer.push(BufferedMessage {
            author: "a".into(),
            text: text.into(),
            send_time: SEND_TIME.into(),
        });
    }
    let r = c
        .call(Method::POST, "/getAndFlushMessages", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let one = json!({"author": "a", "text": "one", "sendTime": SEND_TIME});
    let two = json!({"author": "a", "text": "two", "sendTime": SEND_TIME});
    assert_eq!(r.json(), json!([one, two]));
    assert!(c.buffer.is_empty());
}

#[tokio::test]
async fn flush_200_of_an_empty_buffer_is_an_empty_array() {
    let c = client(Answer::Accept, |_| {});
    let r = c
        .call(Method::POST, "/getAndFlushMessages", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(&r.body[..], b"[]");
}

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
    c.refused.send_replace(Some((code, "bad token".into())));
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
    assert!(r.error().contains("POST /nope"));
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
        assert!(r.error().contains(path));
    }
}

#[tokio::test]
async fn send_413_over_the_body_limit() {
    let c = client(Answer::Accept, |s| s.max_body_bytes = 64);
    let r = c.send(vec![b' '; 65]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("64-byte limit"));
    assert_eq!(c.calls(), 0);
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

#[tokio::test]
async fn send_503_sheds_load_but_probes_still_answer() {
    let c = client(Answer::Hang, |s| s.max_in_flight = 1);
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

#[tokio::test]
async fn operations_routes_200() {
    let c = client(Answer::Accept, |_| {});
    let metrics = c.call(Method::GET, "/metrics", &[], Body::empty()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains(crate::metrics::HTTP_REQUESTS), "{text}");
    let openapi = c
        .call(Method::GET, "/openapi.json", &[], Body::empty())
        .await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.json()["paths"]["/sendMessage"]["post"].is_object());
}

#[test]
fn limits_nesting_outside_strings() {
    let deep = format!(
        r#"{{"author":"a","text":"b","x":{}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    assert!(
        matches!(parse_send_request(deep.as_bytes()), Err(AppError::BadRequest(m)) if m.contains("nesting"))
    );
    let in_string = format!(r#"{{"author":"{}","text":"\\\"[["}}"#, "[".repeat(40));
    assert!(parse_send_request(in_string.as_bytes()).is_ok());
}

#[test]
fn parses_objects_only() {
    assert!(parse_send_request(br#" {"author":"a","text":"b","extra":1}"#).is_ok());
    for bad in [
        &b""[..],
        b"  ",
        br#"["a","b"]"#,
        br#"{"author":"a"}"#,
        br#"{"author":1,"text":"b"}"#,
        b"{\"author\":\"\xff\",\"text\":\"b\"}",
        br#"{"author":"a","text":null}"#,
        b"{",
    ] {
        assert!(
            matches!(parse_send_request(bad), Err(AppError::BadRequest(_))),
            "{bad:?}"
        );
    }
}
