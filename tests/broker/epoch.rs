//! A Redis whose history no longer matches what the replicas delivered: back
//! from an older snapshot (its offsets behind theirs), back empty (the first
//! message of the new epoch must still reach every client), and a stream
//! trimmed past a frozen replica. Each is a new epoch or a gap, reported as
//! "history lost" and `recovered: false`, never a silent skip.

use crate::loss::{Pair, health_becomes, next, pair_on, read};
use crate::{HEAVY, poll_until, replica};
use messenger_tests::procs::spawn_client;
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Redis back from an older snapshot of the same epoch (RDB after a crash,
/// AOF `everysec`, a failover to a lagging replica): its offsets are behind
/// what the replicas delivered. Reusing them would let every replica skip
/// the next messages as already delivered (found by a review: acknowledged,
/// delivered nowhere). Instead it is a new epoch: open streams end "history
/// lost", a resume reports the gap, and new messages flow from offset 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_back_from_an_older_snapshot_is_a_new_epoch() {
    let _heavy = HEAVY.lock().await;
    let (dir, snapshot) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let Pair {
        port,
        redis,
        a,
        b,
        epoch,
        mut on_a,
    } = pair_on(dir.path()).await;
    let mut grpc_b = b.grpc().await;
    grpc_send(&mut grpc_b, "bob", "kept").await.unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.path().join("."))
        .arg(snapshot.path())
        .status()
        .unwrap();
    assert!(copied.success(), "snapshot of the AOF directory");
    for text in ["rolled back 2", "rolled back 3"] {
        grpc_send(&mut grpc_b, "bob", text).await.unwrap();
    }
    for want in ["kept", "rolled back 2", "rolled back 3"] {
        assert_eq!(next(&mut on_a).await.text, want);
    }

    redis.proc.kill9_and_wait().await;
    let _redis = RedisProc::start_on(port, Some(snapshot.path())).await;
    let ended = within("the stream ends", on_a.message())
        .await
        .expect_err("ended with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("history lost"), "{ended:?}");
    let since = format!("{epoch}:3");
    let (new_epoch, recovered, mut resumed) = read(a.grpc_addr, "messenger-since", &since).await;
    assert_ne!(new_epoch, epoch, "rolled back is a new epoch");
    assert_eq!(recovered.as_deref(), Some("false"), "the gap is reported");
    health_becomes(b.grpc_addr, ServingStatus::Serving).await;
    grpc_send(&mut grpc_b, "bob", "after").await.unwrap();
    let first = next(&mut resumed).await;
    assert_eq!((first.text.as_str(), first.offset), ("after", 1));
    println!(
        "redis rolled back from offset 3 to 1: new epoch {new_epoch} (was {epoch}), streams ended, next message at offset 1"
    );
}

/// The first message after Redis came back empty (a new epoch) reaches every
/// client, including one whose stream ends ("history lost") after that
/// message was accepted: the client re-opens its stream from the new epoch's
/// start instead of starting live past it (found by review: acknowledged, in
/// no buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_message_of_a_new_epoch_reaches_every_client() {
    let _heavy = HEAVY.lock().await;
    let port = free_port();
    let redis = RedisProc::start_on(port, None).await;
    let url = redis.url();
    let a = replica("a", &url, &[]).await;
    let b = replica("b", &url, &[]).await;
    let client = spawn_client(a.grpc_addr, &[("OTEL_SERVICE_NAME", "client-a")]).await;
    client.send("ann", "before").await;
    let flushed = |want: &'static str| {
        let client = &client;
        move || async move {
            let got = client.flush().await;
            got.iter().any(|m| m.text == want).then_some(got)
        }
    };
    poll_until("the client holds 'before'", WAIT, flushed("before")).await;

    redis.proc.kill9_and_wait().await;
    let _redis = RedisProc::start_on(port, None).await;
    // Sent through B at once, before A's reader has loaded the new epoch.
    let grpc_b = b.grpc().await;
    let first = "first of the new epoch";
    let probe = || {
        let mut grpc = grpc_b.clone();
        async move { grpc_send(&mut grpc, "bob", first).await.ok() }
    };
    let (_, accepted) = poll_until("a send through B after the restart", WAIT, probe).await;
    let (got, took) = poll_until("A's client holds it", WAIT, flushed(first)).await;
    assert_eq!(got.iter().filter(|m| m.text == first).count(), 1, "{got:?}");
    println!(
        "redis back empty: first send accepted {accepted:?} after the restart, in A's client {took:?} later"
    );
}

/// A replica frozen while the stream is trimmed past its position (more
/// than `MAXLEN` entries go through another replica) cannot continue: when
/// it thaws, its open streams end "history lost" and a resume from before
/// the gap reports `recovered: false`; then it delivers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_the_stream_was_trimmed_past_reports_the_gap() {
    const SENT: usize = 1_500; // past MAXLEN ~ 1000 (the floor; history size 10)
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let small = [("MESSENGER_HISTORY_SIZE", "10")];
    let a = replica("a", &redis.url(), &small).await;
    let b = replica("b", &redis.url(), &small).await;
    let (epoch, _, mut on_a) = read(a.grpc_addr, "messenger-offsets", "1").await;
    let mut grpc_b = b.grpc().await;
    grpc_send(&mut grpc_b, "bob", "seen").await.unwrap();
    assert_eq!(next(&mut on_a).await.offset, 1);

    a.proc.pause();
    for i in 0..SENT {
        grpc_send(&mut grpc_b, "bob", &i.to_string()).await.unwrap();
    }
    a.proc.resume();
    // What Redis had already answered A's pending XREAD with arrives first.
    let mut before_gap = Vec::new();
    let ended = within("A's stream ends", async {
        loop {
            match on_a.message().await {
                Ok(Some(m)) => before_gap.push(m.offset),
                Ok(None) => panic!("ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await;
    assert!(
        before_gap
            .iter()
            .copied()
            .eq(2..2 + before_gap.len() as u64),
        "a gap-free prefix before the end: {before_gap:?}"
    );
    assert!(
        before_gap.len() < 1000,
        "then the gap: {}",
        before_gap.len()
    );
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("history lost"), "{ended:?}");
    let (same_epoch, recovered, _) =
        read(a.grpc_addr, "messenger-since", &format!("{epoch}:1")).await;
    assert_eq!(same_epoch, epoch, "trimming is not a new epoch");
    assert_eq!(recovered.as_deref(), Some("false"), "the gap is reported");
    let (_, _, mut live) = read(a.grpc_addr, "messenger-offsets", "1").await;
    grpc_send(&mut grpc_b, "bob", "after").await.unwrap();
    // A may still be catching up: what it delivers is gap-free up to "after".
    let mut offsets = Vec::new();
    loop {
        let m = next(&mut live).await;
        offsets.push(m.offset);
        if m.text == "after" {
            break;
        }
    }
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    assert_eq!(offsets.last(), Some(&(SENT as u64 + 2)));
    let warned = (a.proc.lines().iter()).any(|l| l.text.contains("trimmed past this replica"));
    assert!(warned, "the gap is logged");
}
