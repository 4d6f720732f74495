//! The bounds of `/events`: the stream cap (and 0, turned off), other
//! methods, shutdown, the keep-alive, and
//! how many streams one client holds (with its memory per stream).

use super::sse::get;
use super::{open, stack};
use messenger_tests::poll_until;
use messenger_tests::procs::rss_of;
use messenger_tests::within;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_streams_get_503_with_retry_after() {
    let (_server, client) = stack(&[("MESSENGER_MAX_EVENT_STREAMS", "2")]).await;
    let first = open(&client, "", &[]).await;
    let _second = open(&client, "", &[]).await;
    let refused = get(&client, "", &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let json: Value = refused.json().await.unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("MESSENGER_MAX_EVENT_STREAMS"),
        "{json}"
    );
    drop(first);
    poll_until("a slot freed", Duration::from_secs(5), || async {
        (get(&client, "", &[]).await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_promptly() {
    let (_server, client) = stack(&[]).await;
    let (mut stream, _) = open(&client, "", &[]).await;
    let started = Instant::now();
    let (end, code) = tokio::join!(stream.next(), client.proc.sigterm_and_wait());
    assert!(end.is_none(), "the stream ended: {end:?}");
    assert_eq!(code, Some(0));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{took:?}; the grace period is 10 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_a_keep_alive_comment_every_15_s() {
    let (_server, client) = stack(&[]).await;
    let (mut stream, _) = open(&client, "", &[]).await;
    let started = Instant::now();
    let chunk = tokio::time::timeout(Duration::from_secs(17), stream.response.chunk())
        .await
        .expect("something within 17 s")
        .expect("stream open")
        .expect("a chunk");
    let took = started.elapsed();
    assert!(chunk.starts_with(b":"), "a comment: {chunk:?}");
    assert!(
        took >= Duration::from_secs(13),
        "{took:?}: paced, not a flood"
    );
}

/// One client holding its default cap of streams, every one delivering;
/// prints the client's memory per stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_256_streams_and_each_delivers() {
    const STREAMS: usize = 256;
    let (_server, client) = stack(&[]).await;
    let pid = client.proc.pid();
    let before = rss_of(pid).expect("client RSS");
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        streams.push(open(&client, "", &[]).await.0);
    }
    let time = client.send("many", "to all").await;
    for stream in &mut streams {
        let (_, json) = stream.message().await;
        assert_eq!(json["sendTime"], time);
    }
    let after = rss_of(pid).expect("client RSS");
    let refused = get(&client, "", &[]).await;
    assert_eq!(refused.status(), 503, "the default cap is 256");
    println!(
        "one client, {STREAMS} /events streams: RSS {before} -> {after} bytes, {} bytes per stream",
        after.saturating_sub(before) / STREAMS as u64
    );
    within("streams closed", async { drop(streams) }).await;
}

/// `MESSENGER_MAX_EVENT_STREAMS=0` turns `/events` off: a 404 naming the
/// variable, never a 503 with `Retry-After` (no retry can succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_turned_off_is_404_naming_the_variable_without_retry_after() {
    let (_server, client) = stack(&[("MESSENGER_MAX_EVENT_STREAMS", "0")]).await;
    let refused = get(&client, "", &[]).await;
    assert_eq!(refused.status(), 404);
    assert!(refused.headers().get("retry-after").is_none());
    let json: Value = refused.json().await.unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("turned off") && error.contains("MESSENGER_MAX_EVENT_STREAMS=0"),
        "{json}"
    );
}

/// Every method but GET/HEAD on `/events` is the same JSON 405 with
/// `Allow` as on the other routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_on_events_are_json_405_with_allow() {
    let (_server, client) = stack(&[]).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .http
            .request(method.clone(), client.url("/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains("GET"), "{method}: {allow}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(
            json["error"],
            format!("method \"{method}\" is not allowed on \"/events\""),
            "{method}"
        );
    }
}
