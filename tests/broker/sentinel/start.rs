//! Sentinel addressing at start: Sentinels that do not answer, a master name
//! they do not know (the replica keeps retrying, `NOT_SERVING`, one WARN
//! naming the Sentinels and the master; a send answers `UNAVAILABLE` naming
//! them), and a malformed URL (exit 2, the mistake named, no credential).

use crate::loss::health_becomes;
use crate::{HEAVY, replica};
use messenger_tests::procs::Proc;
use messenger_tests::redis::free_port;
use messenger_tests::sentinel::Topology;
use messenger_tests::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A replica on `url` is NOT_SERVING, logs one line naming `names`, and
/// answers a send UNAVAILABLE naming them too.
async fn no_primary(url: &str, names: &[&str]) {
    let a = replica("a", url, &[]).await;
    health_becomes(a.grpc_addr, ServingStatus::NotServing).await;
    let line = a
        .proc
        .wait_line("the broker unreachable line", |l| {
            l.text.contains("broker unreachable")
        })
        .await;
    for name in names {
        assert!(line.text.contains(name), "{name} not in {}", line.text);
    }
    let mut grpc = a.grpc().await;
    let refused = grpc_send(&mut grpc, "ann", "hello")
        .await
        .expect_err("no primary");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    for name in names {
        let message = refused.message();
        assert!(message.contains(name), "{name} not in {message}");
    }
    assert!(refused.message().contains("retry"), "{}", refused.message());
    let unreachable = (a.proc.lines().iter())
        .filter(|l| l.text.contains("broker unreachable"))
        .count();
    assert_eq!(
        unreachable,
        1,
        "one line, not one per retry:\n{}",
        a.proc.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_do_not_answer_are_named_and_the_replica_is_not_serving() {
    let _heavy = HEAVY.lock().await;
    let (p1, p2) = (free_port(), free_port());
    let url = format!("redis+sentinel://127.0.0.1:{p1},127.0.0.1:{p2}/mymaster");
    let (s1, s2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    no_primary(&url, &[&s1, &s2, "mymaster"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_name_the_sentinels_do_not_know_is_named_and_the_replica_is_not_serving() {
    let _heavy = HEAVY.lock().await;
    let topology = Topology::start().await;
    let url = topology.url().replace("/mymaster", "/nosuchmaster");
    let first = format!("127.0.0.1:{}", topology.sentinel_ports()[0]);
    no_primary(&url, &[&first, "nosuchmaster"]).await;
}

#[tokio::test]
async fn a_malformed_sentinel_url_exits_2_naming_the_mistake() {
    for (url, says) in [
        ("redis+sentinel://u:hunter2@h:0/m", "port"),
        ("redis+sentinel://u:hunter2@h", "master name"),
        ("redis+sentinel://u:hunter2@h/m/0", "no /db part"),
        (
            "redis+sentinel://h/m?sentinel_password=hunter2&x=1",
            "unknown query parameter",
        ),
    ] {
        let server = Proc::spawn(
            "bad-url",
            "messenger-server",
            &[("MESSENGER_BROKER_URL", url)],
        );
        let code = within("the server exits", server.wait_exit()).await;
        assert_eq!(code, Some(2), "{url}: {}", server.tail());
        let tail = server.tail();
        assert!(tail.contains("MESSENGER_BROKER_URL"), "{tail}");
        assert!(tail.contains(says), "{url}: {tail}");
        assert!(!tail.contains("hunter2"), "a credential shown: {tail}");
    }
}
