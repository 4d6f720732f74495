//! [`router`](crate::api::router) driven with `tower::ServiceExt::oneshot`, as in the axum
//! examples: no socket, no server process. The one stand-in is [`Server`],
//! an in-memory [`MessageSender`] that plays the server's answers to
//! `SendMessage`; the router, its layers, the buffer and the error mapping
//! are the production code. One test per status (and per bad-body kind).

use super::*;
use crate::api::router;
use crate::backend::{MessageSender, SendFuture};
use crate::error::{EXPECTED_BODY, RETRY_AFTER_SECS};
use crate::failure::Down;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceExt;

mod errors;
mod listed;
mod page;

const SEND_TIME: &str = "2021-09-12T10:25:22.454093428Z";
/// Upper bound on any one request; a hang fails the test instead of stalling it.
const BOUND: Duration = Duration::from_secs(5);

/// How the fake server answers every `SendMessage`.
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    Refuse(Code),
    Unreachable,
    /// Answers `UNAVAILABLE` itself, as a server whose broker is down does.
    BrokerDown,
    DeadlineExceeded,
    NoSendTime,
    /// Never answers (a stuck server).
    Hang,
    /// A bug in our own code path: the handler panics.
    Panic,
}

/// The server side, in memory: answers with `answer` and counts the calls;
/// an accepted message reaches `buffer` first, as the real server's stream
/// delivers it before the acknowledgement.
struct Server {
    answer: Answer,
    calls: watch::Sender<Vec<(String, String)>>,
    buffer: Arc<Buffer>,
}

impl MessageSender for Server {
    fn send(&self, author: String, text: String) -> SendFuture<'_> {
        self.calls
            .send_modify(|calls| calls.push((author.clone(), text.clone())));
        if matches!(self.answer, Answer::Accept) {
            self.buffer.push(BufferedMessage {
                author,
                text,
                send_time: SEND_TIME.to_owned(),
            });
        }
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
                Answer::BrokerDown => Err(BackendError::ServerUnavailable {
                    addr: "127.0.0.1:1".into(),
                    message: "broker redis://127.0.0.1:6379: connection refused".into(),
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
    down: watch::Sender<Option<Down>>,
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

/// The real tonic backend, aimed at a port nothing listens on: `/events`
/// opens its subscriptions there and is refused.
fn unreachable_backend() -> crate::backend::Backend {
    let keepalive = crate::backend::Keepalive {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
    };
    let uri = "http://127.0.0.1:1".parse().expect("a URI");
    crate::backend::Backend::new(uri, BOUND, keepalive, None, None, None).expect("no TLS")
}

/// A subscribed client whose server answers `answer`; `tweak` adjusts limits.
fn client(answer: Answer, tweak: impl FnOnce(&mut AppState)) -> Client {
    let buffer = Arc::new(Buffer::new(16, usize::MAX));
    let server = Arc::new(Server {
        answer,
        calls: watch::Sender::new(Vec::new()),
        buffer: Arc::clone(&buffer),
    });
    let (subscribed, subscribed_rx) = watch::channel(true);
    let (down, down_rx) = watch::channel(None);
    let mut state = AppState {
        backend: server.clone(),
        buffer: Arc::clone(&buffer),
        subscribed: subscribed_rx,
        down: down_rx,
        max_body_bytes: 1024,
        exporter: messenger_runtime::metrics::install(&crate::metrics::buckets()),
        http_timeout: BOUND,
        in_flight: crate::limits::InFlight::new(8),
        events: crate::events::EventStreams::new(unreachable_backend(), 2),
        page: crate::page::Page::new(None),
        allowed_hosts: crate::origin::AllowedHosts::default(),
    };
    tweak(&mut state);
    Client {
        router: router(state),
        server,
        buffer,
        subscribed,
        down,
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
        matches!(parse_send_request(deep.as_bytes()), Err(ApiError::BadRequest(m)) if m.contains("nesting"))
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
            matches!(parse_send_request(bad), Err(ApiError::BadRequest(_))),
            "{bad:?}"
        );
    }
}
