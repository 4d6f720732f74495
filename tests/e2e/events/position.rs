//! The position an `/events` request resumes from, as the caller gives it:
//! bounded before anything reaches the server (one caller's oversized value
//! must not break the HTTP/2 connection every stream of the client shares),
//! a position ahead of the head labelled as such, not as a new epoch, and
//! offset 0 (a fresh epoch's `ready` id) a position like any other.

use super::sse::{get, split_id};
use super::{open, stack};
use serde_json::Value;

/// An epoch past the documented bound is 400 naming the bound, by header
/// and by query, and the streams already open keep delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_epoch_is_400_and_other_streams_live_on() {
    let (_server, client) = stack(&[]).await;
    let (mut other, _) = open(&client, "", &[]).await;
    let huge = format!("{}:1", "e".repeat(100_000));
    let large = format!("?since={}:1", "e".repeat(20_000));
    let just_over = format!("{}:1", "e".repeat(65));
    for (query, header) in [
        ("", Some(huge.as_str())),
        (large.as_str(), None),
        ("", Some(just_over.as_str())),
    ] {
        let headers: Vec<_> = header.iter().map(|h| ("last-event-id", *h)).collect();
        let response = get(&client, query, &headers).await;
        assert_eq!(response.status(), 400, "{}", query.len());
        let json: Value = response.json().await.unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(
            error.contains("epoch is longer than 64 bytes") && error.len() < 400,
            "{error}"
        );
    }
    // At the bound: accepted (an unknown epoch, so a gap, not an error).
    let at_bound = format!("{}:1", "e".repeat(64));
    let (_resumed, ready) = open(&client, "", &[("last-event-id", &at_bound)]).await;
    assert_eq!(ready["recovered"], false, "{ready}");
    // The stream opened before is untouched.
    let time = client.send("p", "still here").await;
    let (_, json) = other.message().await;
    assert_eq!(json["sendTime"], time);
}

/// A position past the head of the current epoch starts live at the head:
/// `recovered: false`, one `gap` with `missed: 0` at the head, no replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_ahead_of_the_head_starts_live_with_missed_zero() {
    let (_server, client) = stack(&[]).await;
    client.send("p", "one").await;
    client.send("p", "two").await;
    let (_plain, ready) = open(&client, "", &[]).await;
    let epoch = ready["epoch"].as_str().unwrap().to_owned();
    let head = ready["offset"].as_u64().unwrap();
    assert_eq!(head, 2);
    let since = format!("?since={epoch}:{}", u64::MAX);
    let (mut ahead, ready) = open(&client, &since, &[]).await;
    assert_eq!(ready["recovered"], false, "{ready}");
    assert_eq!(
        (ready["epoch"].as_str(), ready["offset"].as_u64()),
        (Some(epoch.as_str()), Some(head))
    );
    let gap = ahead.next().await.expect("the gap event");
    assert_eq!(gap.event, "gap", "{gap:?}");
    assert_eq!(gap.json()["missed"], 0, "{gap:?}");
    assert_eq!(split_id(gap.id.as_deref().unwrap()), (epoch.clone(), head));
    let time = client.send("p", "three").await;
    let (id, json) = ahead.message().await;
    assert_eq!(json["sendTime"], time, "live, not a replay of the epoch");
    assert_eq!(split_id(&id), (epoch, head + 1));
}

/// The `ready` id of a fresh epoch is `<epoch>:0`, the position before its
/// first message. Resumed from it once history has dropped the first
/// messages, the browser is told of a gap with the count it missed; it used
/// to get what history still held as `recovered` (offset 0 read as "the
/// oldest held"), a silent loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_offset_0_after_eviction_is_a_gap_with_its_count() {
    use messenger_tests::procs::{spawn_client, spawn_server};
    let server = spawn_server(&[("MESSENGER_HISTORY_SIZE", "5")]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let (first, ready) = open(&client, "", &[]).await;
    drop(first);
    let start = format!("{}:0", ready["epoch"].as_str().unwrap());
    assert_eq!(ready["offset"], 0, "{ready}");
    let mut grpc = server.grpc().await;
    for i in 1..=8 {
        messenger_tests::grpc_send(&mut grpc, "e", &format!("m{i}"))
            .await
            .unwrap();
    }
    let (mut resumed, ready) = open(&client, "", &[("last-event-id", &start)]).await;
    assert_eq!(ready["recovered"], false, "m1..m3 were evicted: {ready}");
    let gap = resumed.next().await.expect("the gap event");
    assert_eq!(gap.event, "gap", "{gap:?}");
    assert_eq!(gap.json()["missed"], 8, "{gap:?}");
}
