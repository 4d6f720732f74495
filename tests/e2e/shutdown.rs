//! Graceful shutdown: health goes NOT_SERVING, every acknowledged message is
//! delivered, then every stream ends with UNAVAILABLE.

use messenger_proto::pb::ServerMessageResponse;
use messenger_tests::*;
use tonic::{Code, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_delivers_acknowledged_messages_then_ends_streams_unavailable() {
    let server = TestServer::start().await;
    let mut streams = [server.subscribe().await, server.subscribe().await];
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = within("health", watch.message()).await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // A sender keeps going until the server refuses it.
    let mut sender = server.grpc().await;
    let load = tokio::spawn(async move {
        let mut acked = Vec::new();
        loop {
            match grpc_send(&mut sender, "load", &acked.len().to_string()).await {
                Ok(t) => acked.push(t),
                Err(status) => return (acked, status),
            }
        }
    });
    // Let the load reach the streams before stopping.
    let _ = read_n(&mut streams[0], 100).await;
    let hub = server.hub.clone();
    // Shutdown waits for clients to read what is queued, so read while it runs.
    let stopping = tokio::spawn(server.stop());
    let update = within("NOT_SERVING", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        update.status,
        ServingStatus::NotServing as i32,
        "health flips first"
    );
    drop(watch);

    let (acked, refusal) = within("load ends", load).await.unwrap();
    // What an unacknowledged sender sees depends on where it raced shutdown:
    // the hub's UNAVAILABLE, a closed connection, or tonic's client reporting a
    // request caught by the graceful GOAWAY as INTERNAL.
    let refused = matches!(refusal.code(), Code::Unavailable | Code::Cancelled)
        || (refusal.code() == Code::Internal && format!("{refusal:?}").contains("GoAway"));
    assert!(refused, "unexpected refusal {refusal:?}");

    for (i, stream) in streams.iter_mut().enumerate() {
        let mut got = Vec::new();
        let status = within("stream ends", async {
            loop {
                match stream.message().await {
                    Ok(Some(m)) => got.push(Msg::from(m).send_time),
                    Ok(None) => panic!("stream {i} ended without a status"),
                    Err(status) => break status,
                }
            }
        })
        .await;
        assert_eq!(status.code(), Code::Unavailable, "stream {i}: {status:?}");
        assert_eq!(status.message(), "server shutting down");
        let skip = if i == 0 { 100 } else { 0 };
        assert_eq!(
            got.len() + skip,
            acked.len(),
            "stream {i} got every acknowledged message"
        );
        assert_eq!(got, acked[skip..], "stream {i}");
    }
    within("graceful shutdown", stopping)
        .await
        .unwrap()
        .expect("graceful shutdown returns Ok");
    assert_eq!(hub.subscribers(), 0);
}

/// A subscriber that never reads cannot hold shutdown past the grace period:
/// its queue cannot drain, so the server gives up on it when grace ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_ends_within_the_grace_period_despite_a_stuck_subscriber() {
    let grace = std::time::Duration::from_secs(1);
    let (server, _stuck) = with_a_stuck_subscriber(grace).await;
    assert_eq!(server.hub.subscribers(), 1, "not disconnected as slow");
    let started = std::time::Instant::now();
    server.stop().await.expect("shutdown still returns Ok");
    let took = started.elapsed();
    assert!(
        took >= grace,
        "it waited for the stuck subscriber ({took:?})"
    );
    assert!(
        took < grace * 3,
        "it stopped soon after the grace period ({took:?})"
    );
}

/// The drain closes the gRPC listener at once (step 2 of
/// `server/src/app/shutdown.rs`): while a stuck subscriber holds the drain
/// for its grace period, a new connection is refused, not left in the
/// backlog until its own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_listener_closes_when_the_drain_starts_not_when_it_ends() {
    let grace = std::time::Duration::from_secs(3);
    let (server, _stuck) = with_a_stuck_subscriber(grace).await;
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    let (_, took) = poll_until("a connection to be refused", grace, || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(
        !stopping.is_finished(),
        "refused while the drain still runs ({took:?} after it began)"
    );
    within("graceful shutdown", stopping)
        .await
        .unwrap()
        .expect("shutdown returns Ok");
}

/// A server with shutdown grace `grace` and one subscriber that never reads,
/// its stream (returned, to keep it open) holding messages it will not take:
/// more than HTTP/2 flow control lets through, less than the queue (1024)
/// holds, so it is not disconnected as slow and holds the drain.
async fn with_a_stuck_subscriber(
    grace: std::time::Duration,
) -> (TestServer, Streaming<ServerMessageResponse>) {
    let server = TestServer::start_with(|c| c.shutdown_grace_secs = grace.as_secs()).await;
    let stuck = server.subscribe().await;
    let mut sender = server.grpc().await;
    let text = "x".repeat(16 * 1024);
    for i in 0..300 {
        grpc_send(&mut sender, "a", &format!("{i}{text}"))
            .await
            .unwrap();
    }
    (server, stuck)
}
