//! `GET /events` without a browser, on the real binaries: ids and stream
//! order, the course buffer left alone, resume after a cut with nothing lost
//! or repeated, the gap after a kill -9 and restart of the server, the stream
//! cap, shutdown, the keep-alive, how many streams one client holds, and the
//! bounds and labels of a caller-given position.

mod bounds;
mod position;
mod sse;
mod stalled;

use messenger_tests::poll_until;
use messenger_tests::procs::{ClientProc, ServerProc, spawn_client, spawn_server};
use messenger_tests::prom::{scrape, wait_metrics};
use serde_json::Value;
use sse::{Sse, get, split_id};
use std::time::Duration;

async fn stack(client_env: &[(&str, &str)]) -> (ServerProc, ClientProc) {
    let server = spawn_server(&[]).await;
    let client = spawn_client(server.grpc_addr, client_env).await;
    (server, client)
}

/// Opens a stream and reads its `ready` event: the stream's epoch and offset.
async fn open(client: &ClientProc, query: &str, headers: &[(&str, &str)]) -> (Sse, Value) {
    let mut stream = Sse::open(client, query, headers).await;
    let ready = stream.next().await.expect("the ready event");
    assert_eq!(ready.event, "ready", "{ready:?}");
    assert_eq!(ready.retry, Some(1000), "the browser's reconnect delay");
    let json = ready.json();
    assert_eq!(
        ready.id.as_deref(),
        Some(format!("{}:{}", json["epoch"].as_str().unwrap(), json["offset"]).as_str())
    );
    (stream, json)
}

async fn send_n(client: &ClientProc, prefix: &str, range: std::ops::Range<u64>) -> Vec<String> {
    let mut times = Vec::new();
    for i in range {
        times.push(client.send("events", &format!("{prefix}{i}")).await);
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_ids_in_stream_order_and_leave_the_course_buffer_alone() {
    let (_server, client) = stack(&[]).await;
    let (mut stream, ready) = open(&client, "", &[("accept-encoding", "gzip, br")]).await;
    let h = stream.response.headers().clone();
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none(), "never compressed");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(ready["recovered"], Value::Null, "nothing asked");
    let epoch = ready["epoch"].as_str().unwrap().to_owned();
    let head = ready["offset"].as_u64().unwrap();

    let times = send_n(&client, "m", 0..20).await;
    for (i, time) in times.iter().enumerate() {
        let (id, json) = stream.message().await;
        assert_eq!(
            id,
            format!("{epoch}:{}", head + 1 + i as u64),
            "ids in order"
        );
        assert_eq!(
            json,
            serde_json::json!({"author": "events", "text": format!("m{i}"), "sendTime": time}),
            "the fields of /getAndFlushMessages, no traceparent when none was sent"
        );
    }
    // The course buffer holds each message once: /events took none of them.
    let flushed = client.collect(20).await;
    let texts: Vec<_> = flushed.iter().map(|m| m.text.as_str()).collect();
    let expected: Vec<_> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    assert!(client.flush().await.is_empty());
    let m = scrape(&client.metrics_url()).await;
    assert_eq!(m.value("messenger_client_event_streams", &[]), Some(1.0));
    assert!(m.value("messenger_client_events_sent_total", &[]).unwrap() >= 21.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumes_after_last_event_id_with_nothing_lost_or_repeated() {
    let (_server, client) = stack(&[]).await;
    let (mut stream, _) = open(&client, "", &[]).await;
    send_n(&client, "a", 0..5).await;
    let mut last = String::new();
    for _ in 0..5 {
        last = stream.message().await.0;
    }
    drop(stream); // the cut
    send_n(&client, "b", 0..7).await; // while nobody reads

    let (mut resumed, ready) = open(&client, "", &[("last-event-id", &last)]).await;
    assert_eq!(ready["recovered"], true, "{ready}");
    assert_eq!(ready["offset"], split_id(&last).1);
    send_n(&client, "c", 0..3).await;
    let mut got = Vec::new();
    let mut previous = split_id(&last).1;
    for _ in 0..10 {
        let (id, json) = resumed.message().await;
        let offset = split_id(&id).1;
        assert_eq!(offset, previous + 1, "no gap, no duplicate");
        previous = offset;
        got.push(json["text"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (0..7)
        .map(|i| format!("b{i}"))
        .chain((0..3).map(|i| format!("c{i}")))
        .collect();
    assert_eq!(got, expected);

    // `?since=` is the same position; Last-Event-ID wins over it.
    let (mut by_query, ready) = open(&client, &format!("?since={last}"), &[]).await;
    assert_eq!(ready["recovered"], true);
    assert_eq!(by_query.message().await.1["text"], "b0");
    let (mut both, _) = open(&client, "?since=x:1", &[("last-event-id", &last)]).await;
    assert_eq!(both.message().await.1["text"], "b0");

    let m = scrape(&client.metrics_url()).await;
    let recovered = m.value(
        "messenger_client_event_resumes_total",
        &[("result", "recovered")],
    );
    assert_eq!(recovered, Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_position_is_400_naming_it() {
    let (_server, client) = stack(&[]).await;
    for (query, header, named) in [
        ("", Some("nocolon"), "Last-Event-ID"),
        ("", Some(":5"), "Last-Event-ID"),
        ("", Some("e:-1"), "Last-Event-ID"),
        ("", Some("e:99999999999999999999"), "Last-Event-ID"),
        ("?since=e:x", None, "since"),
        ("?since=", None, "since"),
        ("?since=%00:1", None, "since"),
    ] {
        let headers: Vec<_> = header.iter().map(|h| ("last-event-id", *h)).collect();
        let response = get(&client, query, &headers).await;
        assert_eq!(response.status(), 400, "{query} {header:?}");
        let json: Value = response.json().await.unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.starts_with(named), "{error}");
        assert!(error.contains("<epoch>:<offset>"), "{error}");
        // Well formed but past u64::MAX: said so, not called malformed.
        let too_large = header == Some("e:99999999999999999999");
        assert_eq!(error.contains("offset is larger"), too_large, "{error}");
    }
    // A position given twice is refused, not taken from whichever came first.
    let twice = [("last-event-id", "e:1"), ("last-event-id", "e:2")];
    let response = get(&client, "", &twice).await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json["error"],
        "Last-Event-ID was sent 2 times; send it once"
    );
    // Comma-joined is the same as repeated (RFC 9110 §5.3).
    let response = get(&client, "", &[("last-event-id", "e:1,e:2")]).await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json["error"],
        "Last-Event-ID was sent 2 times; send it once"
    );
    let response = get(&client, "?since=e:1,e:2", &[]).await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(
        error.starts_with("since \"e:1,e:2\" is not <epoch>:<offset>"),
        "{error}"
    );
    let response = get(&client, "?since=e:1&since=e:2", &[]).await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    let error = json["error"].as_str().unwrap();
    assert_eq!(error, "since was sent 2 times; send it once");
    // Percent-encoded, the key is still `since`.
    let response = get(&client, "?since=e:1&%73ince=e:2&since=e:3", &[]).await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "since was sent 3 times; send it once");
}

/// A `Last-Event-ID` from an epoch the server does not have (a tab left open
/// across a restart, or anything a caller makes up) is that browser's gap:
/// told to it as `event: gap` and counted once, as a gap, and logged at debug
/// level. A warning per such request would let any caller fill the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_last_event_id_is_the_browsers_gap_not_a_warning_in_the_log() {
    let debug = [("RUST_LOG", "info,messenger_client::backend::resume=debug")];
    let (_server, client) = stack(&debug).await;
    for _ in 0..3 {
        let stale = [("last-event-id", "0123456789abcdef:5")];
        let (mut stream, ready) = open(&client, "", &stale).await;
        assert_eq!(ready["recovered"], false, "{ready}");
        let gap = stream.next().await.expect("the gap event");
        assert_eq!(gap.event, "gap", "{gap:?}");
    }
    let gap_line = |l: &messenger_tests::procs::Line| l.text.contains("stream resumed with a gap");
    let said = client.proc.wait_line("the gap's log line", gap_line).await;
    assert!(said.text.contains(" DEBUG "), "{}", said.text);
    let warned: Vec<_> = client
        .proc
        .lines()
        .into_iter()
        .filter(|l| {
            l.text.contains("messenger_client::backend::resume") && !l.text.contains(" DEBUG ")
        })
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
    // One result per stream: three gaps, no recovered resume (the
    // re-subscription from the new epoch's start is part of the gap).
    let m = scrape(&client.metrics_url()).await;
    let resumes = |result| {
        m.value(
            "messenger_client_event_resumes_total",
            &[("result", result)],
        )
    };
    assert_eq!(resumes("gap"), Some(3.0));
    assert_eq!(resumes("recovered"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill9_and_restart_the_resume_says_gap_then_replays_the_new_epoch() {
    let (server, client) = stack(&[]).await;
    let port = server.grpc_addr.port().to_string();
    let (mut stream, _) = open(&client, "", &[]).await;
    client.send("k", "before").await;
    let (last, _) = stream.message().await;

    server.proc.kill9_and_wait().await;
    assert!(
        stream.next().await.is_none(),
        "the stream ends with its subscription"
    );
    let refused = get(&client, "", &[("last-event-id", &last)]).await;
    assert_eq!(refused.status(), 503, "the server is away");
    assert_eq!(refused.headers()["retry-after"], "1");

    let restarted = spawn_server(&[("MESSENGER_SERVER_PORT", port.as_str())]).await;
    // Sent to the new server before the browser is back: replayed, not skipped.
    let mut grpc = restarted.grpc().await;
    messenger_tests::grpc_send(&mut grpc, "k", "after")
        .await
        .unwrap();
    let (response, _) = poll_until("/events back", Duration::from_secs(10), || async {
        let r = get(&client, "", &[("last-event-id", &last)]).await;
        (r.status() == 200).then_some(r)
    })
    .await;
    drop(response);
    let (mut resumed, ready) = open(&client, "", &[("last-event-id", &last)]).await;
    assert_eq!(ready["recovered"], false, "{ready}");
    let gap = resumed.next().await.expect("the gap event");
    assert_eq!(gap.event, "gap", "{gap:?}");
    let json = gap.json();
    assert_eq!(
        json["missed"],
        Value::Null,
        "a lost history's size is unknown"
    );
    let (new_epoch, offset) = split_id(gap.id.as_deref().unwrap());
    assert_ne!(new_epoch, split_id(&last).0, "a new epoch");
    assert_eq!(offset, 0, "from the new epoch's start");
    let (id, message) = resumed.message().await;
    assert_eq!(message["text"], "after");
    assert_eq!(id, format!("{new_epoch}:1"));
    let m = scrape(&client.metrics_url()).await;
    assert!(m.value("messenger_client_event_gaps_total", &[]).unwrap() >= 1.0);
}

/// A reader that stops reading is cut once a whole queue (1 MiB here) waits
/// for it, never holding the server's stream; its reconnect resumes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_a_whole_queue_behind_is_cut_and_its_reconnect_resumes() {
    const N: u64 = 500; // 30 MB: the queue plus any socket buffers, several times over
    let (server, client) = stack(&[]).await;
    let (mut stalled, _) = open(&client, "", &[]).await;
    let mut grpc = server.grpc().await;
    let filler = "x".repeat(60_000);
    for i in 1..=N {
        messenger_tests::grpc_send(&mut grpc, "s", &format!("{i} {filler}"))
            .await
            .unwrap();
    }
    let cut = "messenger_client_event_streams_cut_total";
    wait_metrics(&client.metrics_url(), "a cut", |m| {
        m.value(cut, &[]) == Some(1.0)
    })
    .await;
    let mut last = None;
    let mut expected = 1;
    while let Some(e) = stalled.next().await {
        let text = e.json()["text"].as_str().unwrap().to_owned();
        assert!(
            text.starts_with(&format!("{expected} ")),
            "in order, none lost before the cut"
        );
        expected += 1;
        last = e.id;
    }
    assert!(
        expected <= N,
        "cut before the end: read {} of {N}",
        expected - 1
    );
    let last = last.expect("something was delivered before the cut");
    let (mut resumed, ready) = open(&client, "", &[("last-event-id", &last)]).await;
    assert_eq!(ready["recovered"], true, "{ready}");
    for i in expected..=N {
        let (_, json) = resumed.message().await;
        assert!(
            json["text"].as_str().unwrap().starts_with(&format!("{i} ")),
            "{i}"
        );
    }
    let m = scrape(&client.metrics_url()).await;
    assert_eq!(m.value(cut, &[]), Some(1.0), "the resumed reader keeps up");
}
