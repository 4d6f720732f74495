//! A Server-Sent Events reader for the tests: `GET /events` on a real client
//! over reqwest, parsed event by event (the WHATWG fields the client sends:
//! `event`, `id`, `data`, `retry`, and `:` comments).

use messenger_tests::procs::ClientProc;
use messenger_tests::within;
use serde_json::Value;
use std::time::Duration;

/// One event as the browser's `EventSource` would dispatch it.
#[derive(Debug, Clone, Default)]
pub(super) struct SseEvent {
    /// `message` unless an `event:` field names another type.
    pub(super) event: String,
    pub(super) id: Option<String>,
    pub(super) data: String,
    pub(super) retry: Option<u64>,
}

impl SseEvent {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// An open `/events` response.
pub(super) struct Sse {
    pub(super) response: reqwest::Response,
    buf: Vec<u8>,
}

/// `GET /events<query>` with extra headers; the response, whatever its status.
pub(super) async fn get(
    client: &ClientProc,
    query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.http.get(client.url(&format!("/events{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    within("/events response headers", request.send())
        .await
        .expect("HTTP request")
}

impl Sse {
    /// Opens a stream and asserts it was accepted as one.
    pub(super) async fn open(client: &ClientProc, query: &str, headers: &[(&str, &str)]) -> Self {
        let response = get(client, query, headers).await;
        let status = response.status();
        assert_eq!(status, 200, "/events{query}: {:?}", response.text().await);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buf: Vec::new(),
        }
    }

    /// The next event (comments are skipped); `None` when the
    /// stream ended. Fails after `limit`.
    pub(super) async fn next_within(&mut self, limit: Duration) -> Option<SseEvent> {
        tokio::time::timeout(limit, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {limit:?}"))
    }

    /// The next event within the tests' usual bound.
    pub(super) async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(messenger_tests::WAIT).await
    }

    /// The next event, which must be a message; its id and JSON.
    pub(super) async fn message(&mut self) -> (String, Value) {
        let e = self.next().await.expect("stream open");
        assert_eq!(e.event, "message", "{e:?}");
        (e.id.clone().expect("an id"), e.json())
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse(std::str::from_utf8(&block).expect("UTF-8")) {
                    return Some(event);
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// The `(epoch, offset)` of an event id.
pub(super) fn split_id(id: &str) -> (String, u64) {
    let (epoch, offset) = id.rsplit_once(':').expect("<epoch>:<offset>");
    (epoch.to_owned(), offset.parse().expect("a decimal offset"))
}

/// One event block; `None` for a block of comments only.
fn parse(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        event: "message".into(),
        ..SseEvent::default()
    };
    let mut fields = 0;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields += 1;
        match name {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = value.parse().ok(),
            "data" if event.data.is_empty() => event.data = value.to_owned(),
            "data" => event.data = format!("{}\n{value}", event.data),
            other => panic!("unknown SSE field {other:?} in {block:?}"),
        }
    }
    (fields > 0).then_some(event)
}
