//! Redis lost and back: while it is down, `SendMessage` answers UNAVAILABLE
//! naming the broker within the send timeout and health is NOT_SERVING;
//! back with its data, health returns to SERVING on its own and a send
//! through replica B reaches a subscriber on replica A that stayed open;
//! back without its data (a new epoch), every stream ends UNAVAILABLE
//! "history lost" and a resume from the old position reports
//! `recovered: false`.

use crate::{BROKER_TIMEOUT_MS, HEAVY, poll_until, replica};
use messenger_proto::pb::ServerMessageResponse;
use messenger_tests::procs::ServerProc;
use messenger_tests::redis::{RedisProc, free_port};
use messenger_tests::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Opens `ReadMessages` with `key: value`; the epoch and recovered headers.
pub(crate) async fn read(
    addr: SocketAddr,
    key: &'static str,
    value: &str,
) -> (String, Option<String>, Streaming<ServerMessageResponse>) {
    let mut client = connect(addr).await;
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert(key, value.parse().unwrap());
    let response = within("ReadMessages headers", client.read_messages(request))
        .await
        .expect("subscribe");
    let header = |k| (response.metadata().get(k)).map(|v| v.to_str().unwrap().to_owned());
    let epoch = header("messenger-epoch").expect("epoch header");
    let recovered = header("messenger-recovered");
    (epoch, recovered, response.into_inner())
}

pub(crate) async fn next(stream: &mut Streaming<ServerMessageResponse>) -> ServerMessageResponse {
    within("a stream message", stream.message())
        .await
        .expect("stream open")
        .expect("a message")
}

/// Polls the messenger service's health on `addr` until it is `want`.
pub(crate) async fn health_becomes(addr: SocketAddr, want: ServingStatus) -> Duration {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap();
    let mut health = HealthClient::new(within("connect", channel.connect()).await.unwrap());
    let what = format!("{addr} health {want:?}");
    let (_, took) = poll_until(&what, Duration::from_secs(15), || {
        let mut health = health.clone();
        async move {
            let request = HealthCheckRequest {
                service: messenger_proto::SERVICE_NAME.into(),
            };
            let status = health.check(request).await.ok()?.into_inner().status;
            (status == want as i32).then_some(())
        }
    })
    .await;
    let _ = &mut health;
    took
}

/// Redis on a fixed free port, persisting into `dir` (so a test can restart
/// it with or without its data), replicas A and B on it, and a raw stream
/// on A that asks for offsets.
pub(crate) struct Pair {
    pub(crate) port: u16,
    pub(crate) redis: RedisProc,
    pub(crate) a: ServerProc,
    pub(crate) b: ServerProc,
    pub(crate) epoch: String,
    pub(crate) on_a: Streaming<ServerMessageResponse>,
}

pub(crate) async fn pair_on(dir: &std::path::Path) -> Pair {
    let port = free_port();
    let redis = RedisProc::start_on(port, Some(dir)).await;
    let url = redis.url();
    let a = replica("a", &url, &[]).await;
    let b = replica("b", &url, &[]).await;
    let (epoch, _, on_a) = read(a.grpc_addr, "messenger-offsets", "1").await;
    Pair {
        port,
        redis,
        a,
        b,
        epoch,
        on_a,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_then_back_with_and_without_its_data() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Pair {
        port,
        redis,
        a,
        b,
        epoch,
        mut on_a,
    } = pair_on(dir.path()).await;
    let mut grpc_a = a.grpc().await;
    let mut grpc_b = b.grpc().await;
    grpc_send(&mut grpc_b, "bob", "before").await.unwrap();
    assert_eq!(next(&mut on_a).await.text, "before");

    // Down: UNAVAILABLE naming the broker, within the timeout; NOT_SERVING.
    redis.proc.kill9_and_wait().await;
    let started = Instant::now();
    let refused = within(
        "SendMessage with Redis down",
        grpc_send(&mut grpc_a, "ann", "lost"),
    )
    .await
    .expect_err("no broker, no acknowledgement");
    let took = started.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let broker = format!("broker redis://127.0.0.1:{port}");
    assert!(refused.message().starts_with(&broker), "{refused:?}");
    assert!(
        took < Duration::from_millis(BROKER_TIMEOUT_MS + 500),
        "answered within the send timeout: {took:?}"
    );
    health_becomes(a.grpc_addr, ServingStatus::NotServing).await;
    health_becomes(b.grpc_addr, ServingStatus::NotServing).await;

    // Back with its data: flow resumes, B reaches A's open stream, SERVING
    // on its own. B sends at once, before its reader is back: its publishing
    // connection died with Redis and nothing replaced it (B sent nothing
    // while Redis was down), and that first send must not fail "broken pipe".
    let back = Instant::now();
    let redis = RedisProc::start_on(port, Some(dir.path())).await;
    grpc_send(&mut grpc_b, "bob", "after")
        .await
        .expect("the first send after Redis is back is acknowledged");
    let serving = health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    health_becomes(b.grpc_addr, ServingStatus::Serving).await;
    let after = next(&mut on_a).await;
    assert_eq!(
        (after.text.as_str(), after.offset),
        ("after", 2),
        "same epoch, next offset"
    );
    let resumed = back.elapsed();

    // Back without its data: a new epoch; streams end with "history lost".
    redis.proc.kill9_and_wait().await;
    let _redis = RedisProc::start_on(port, None).await;
    let ended = within("the stream ends", on_a.message())
        .await
        .expect_err("ended with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("history lost"), "{ended:?}");
    let since = format!("{epoch}:2");
    let (new_epoch, recovered, mut resumed_a) = read(a.grpc_addr, "messenger-since", &since).await;
    assert_ne!(new_epoch, epoch);
    assert_eq!(recovered.as_deref(), Some("false"), "the gap is reported");
    // B may still be reconnecting: it sends once its health says it can.
    health_becomes(b.grpc_addr, ServingStatus::Serving).await;
    grpc_send(&mut grpc_b, "bob", "new epoch").await.unwrap();
    let first = next(&mut resumed_a).await;
    assert_eq!((first.text.as_str(), first.offset), ("new epoch", 1));
    println!(
        "redis loss: SendMessage answered {:?} in {took:?} with Redis down (timeout {BROKER_TIMEOUT_MS} ms); \
         back with its data: SERVING after {serving:?}, flow through B to A after {resumed:?}; \
         back empty: streams ended \"history lost\", resume reported recovered=false",
        refused.code()
    );
}

/// Redis's idle-client `timeout` (or `CLIENT KILL`, or a NAT reset) closes a
/// replica's publishing connection after a quiet spell, while its reader,
/// blocked in `XREAD`, is exempt and the replica stays up. The next send
/// must not be written to the dead connection ("broken pipe; outcome
/// unknown"): a connection idle past a second is `PING`ed first, which
/// replaces it (found by review; reproduced 4 of 4 before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_redis_closed_the_idle_publishing_connection_is_acknowledged() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisProc::start().await;
    let server = replica("a", &redis.url(), &[]).await;
    let mut grpc = connect(server.grpc_addr).await;
    grpc_send(&mut grpc, "a", "warm").await.expect("first send");

    let mut admin = redis.conn().await;
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("timeout")
        .arg("1")
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET timeout");
    // Only the reader (blocked in XREAD) and this admin connection are left
    // once Redis closed the idle publishing one.
    let idled_out = || {
        let mut admin = admin.clone();
        async move {
            let list: String = ::redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut admin)
                .await
                .expect("CLIENT LIST");
            (list.lines().count() <= 2).then_some(())
        }
    };
    let limit = Duration::from_secs(10);
    poll_until(
        "Redis closed the idle publishing connection",
        limit,
        idled_out,
    )
    .await;

    let sent = grpc_send(&mut grpc, "a", "after idle").await;
    assert!(
        sent.is_ok(),
        "the first send after the idle close: {sent:?}"
    );
    health_becomes(server.grpc_addr, ServingStatus::Serving).await;
}

/// A replica started while Redis is down has no stream loaded, only a
/// placeholder epoch: a subscription opened then would end "history lost"
/// when Redis comes and report a gap where nothing was missed (found by
/// review, 2 of 2). It is refused UNAVAILABLE naming the broker until the
/// first load; after it, streams open and stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_before_redis_refuses_subscriptions_until_loaded() {
    let _heavy = HEAVY.lock().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = replica("a", &url, &[]).await;
    let mut grpc = connect(a.grpc_addr).await;
    let refused = within("ReadMessages before the first load", grpc.read_messages(()))
        .await
        .expect_err("no stream before the broker's stream is loaded");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().starts_with(&format!("broker {url}"))
            && refused.message().contains("not loaded the stream yet"),
        "{refused:?}"
    );

    let _redis = RedisProc::start_on(port, None).await;
    health_becomes(a.grpc_addr, ServingStatus::Serving).await;
    let mut stream = subscribe_at(a.grpc_addr).await;
    grpc_send(&mut grpc, "ann", "first").await.expect("send");
    let got = read_n(&mut stream, 1).await;
    assert_eq!(got[0].text, "first");
    grpc_send(&mut grpc, "ann", "second").await.expect("send");
    assert_eq!(read_n(&mut stream, 1).await[0].text, "second", "still open");
}
