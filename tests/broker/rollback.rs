//! Replicas that disagree about how far they got (issue 25's reproduction,
//! automated): Redis rolls back to a snapshot that one replica (B, frozen)
//! is consistent with and the other (A) is ahead of; B then publishes past
//! the snapshot, reusing the offsets A delivered for other messages. Before:
//! A went from m8 straight to n9 in the same epoch, n6-n8 never arrived and
//! no client reported a gap. Now A finds its newest entry gone (at read
//! time, or at its next publish), which is a new epoch; B sees it within a
//! second; both end their streams "history lost" and both report the new
//! epoch, so no offset names two messages and nothing is skipped silently.

use crate::loss::{health_becomes, next, read};
use crate::{HEAVY, replica};
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_that_disagree_after_a_rollback_end_in_one_new_epoch() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let os = std::ffi::OsStr::new;
    let args = [
        os("--appendonly"),
        os("no"),
        os("--dir"),
        dir.path().as_os_str(),
    ];
    let redis = RedisProc::start_with(port, &args, &[]).await;
    let a = replica("a", &redis.url(), &[]).await;
    let b = replica("b", &redis.url(), &[]).await;
    let (epoch, _, mut on_a) = read(a.grpc_addr, "messenger-offsets", "1").await;
    let (_, _, mut on_b) = read(b.grpc_addr, "messenger-offsets", "1").await;
    let (mut grpc_a, grpc_b) = (a.grpc().await, b.grpc().await);

    // 1. Five via A, on both; a snapshot at offset 5.
    for i in 1..=5 {
        grpc_send(&mut grpc_a, "ann", &format!("m{i}"))
            .await
            .unwrap();
    }
    for i in 1..=5 {
        assert_eq!(next(&mut on_a).await.text, format!("m{i}"));
        assert_eq!(next(&mut on_b).await.text, format!("m{i}"));
    }
    let mut admin = redis.conn().await;
    let _: () = ::redis::cmd("SAVE").query_async(&mut admin).await.unwrap();

    // 2. B frozen at offset 5, every connection killed.
    b.proc.pause();
    let _: () = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await
        .unwrap();
    // 3. m6-m8 via A, delivered by A at 6-8.
    for i in 6..=8 {
        grpc_send(&mut grpc_a, "ann", &format!("m{i}"))
            .await
            .unwrap();
        let got = next(&mut on_a).await;
        assert_eq!((got.text, got.offset), (format!("m{i}"), i));
    }
    // 4. A frozen; Redis back from the snapshot at offset 5.
    a.proc.pause();
    redis.proc.kill9_and_wait().await;
    let _redis = RedisProc::start_with(port, &args, &[]).await;
    // 5. B back: n6-n9 via B, acknowledged.
    b.proc.resume();
    let mut acked = Vec::new();
    for i in 6..=9 {
        let sent = poll_until(
            "a send through B",
            std::time::Duration::from_secs(10),
            || {
                let mut grpc = grpc_b.clone();
                async move { grpc_send(&mut grpc, "bob", &format!("n{i}")).await.ok() }
            },
        )
        .await;
        acked.push(sent.0);
    }
    // 6. A back.
    a.proc.resume();

    // A never delivers another message under offsets 6-9 of the old epoch:
    // its stream ends "history lost" after m8.
    let on_a_next = within("A's stream after the rollback", on_a.message()).await;
    match on_a_next {
        Err(status) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(status.message().contains("history lost"), "{status:?}");
        }
        Ok(Some(m)) => panic!(
            "A delivered {:?} at offset {} after m8 in the same epoch (n6-n8 skipped silently)",
            m.text, m.offset
        ),
        Ok(None) => panic!("A's stream ended without a status"),
    }
    // B delivered n6-n9 (acknowledged), then ends "history lost" too.
    let mut b_got = Vec::new();
    let ended_b = loop {
        match within("B's stream", on_b.message()).await {
            Ok(Some(m)) => b_got.push(m.text),
            Ok(None) => panic!("B's stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(b_got, ["n6", "n7", "n8", "n9"]);
    assert!(ended_b.message().contains("history lost"), "{ended_b:?}");

    // Both report one new epoch; a resume from either old position reports the gap.
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    health_becomes(b.grpc_addr, ServingStatus::Serving).await;
    let (epoch_a, recovered_a, _) =
        read(a.grpc_addr, "messenger-since", &format!("{epoch}:8")).await;
    let (epoch_b, recovered_b, _) =
        read(b.grpc_addr, "messenger-since", &format!("{epoch}:9")).await;
    assert_ne!(epoch_a, epoch);
    assert_eq!(epoch_a, epoch_b, "every replica reports the same new epoch");
    assert_eq!(recovered_a.as_deref(), Some("false"));
    assert_eq!(recovered_b.as_deref(), Some("false"));
    println!(
        "rollback with replicas that disagree: A ended \"history lost\" after m8 (before: n9 at \
         offset 9, n6-n8 skipped silently); B ended after n6-n9; both on epoch {epoch_a}"
    );
}
