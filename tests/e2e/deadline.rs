//! Deadlines the client puts on its calls to the server, on the real
//! binaries with the server frozen (SIGSTOP): a send past its deadline is a
//! 504 that says the message may have been accepted (it was: the server
//! reads it once thawed), never a 503 "unreachable" that invites a
//! duplicating retry; an `/events` subscription past it is a 504 too.

use messenger_tests::procs::{spawn_client, spawn_server};
use serde_json::Value;

/// Short, so the test is quick; the HTTP deadline (10 s) is far above it.
const SEND_TIMEOUT_MS: &str = "700";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_past_its_deadline_is_504_may_have_been_accepted_not_503() {
    let server = spawn_server(&[]).await;
    let client = spawn_client(
        server.grpc_addr,
        &[("MESSENGER_SEND_TIMEOUT_MS", SEND_TIMEOUT_MS)],
    )
    .await;
    server.proc.pause();
    let body = r#"{"author":"a","text":"frozen"}"#.to_owned();
    let (status, json) = client.post("/sendMessage", body, &[]).await;
    let events = client.http.get(client.url("/events")).send().await.unwrap();
    let events_status = events.status().as_u16();
    let events_json: Value = events.json().await.unwrap_or(Value::Null);
    server.proc.resume();
    let error = json["error"].as_str().unwrap_or_default();
    assert_eq!(status, 504, "{json}");
    assert!(
        error.contains("may or may not have been accepted")
            && error.contains("MESSENGER_SEND_TIMEOUT_MS")
            && !error.contains("unreachable"),
        "{json}"
    );
    assert_eq!(events_status, 504, "{events_json}");
    assert!(
        events_json["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not register the subscription")),
        "{events_json}"
    );
    // It was accepted: the thawed server delivers it.
    let got = client.collect(1).await;
    assert_eq!(got[0].text, "frozen");
}
