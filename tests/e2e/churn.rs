//! 1,000 streams opened and cancelled with no message in between leave zero
//! subscribers, and the server still answers at once.

use messenger_tests::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_cancelled_streams_leave_no_subscribers() {
    let server = TestServer::start().await;
    let client = server.grpc().await;
    for _round in 0..10 {
        let mut streams = Vec::new();
        for _ in 0..100 {
            let mut c = client.clone();
            streams.push(tokio::spawn(async move {
                c.read_messages(()).await.expect("subscribe").into_inner()
            }));
        }
        let mut open = Vec::new();
        for s in streams {
            open.push(within("subscribe", s).await.unwrap());
        }
        server.wait_subscribers(100).await;
        drop(open);
        server.wait_subscribers(0).await;
    }
    assert_eq!(server.hub.subscribers(), 0);

    let mut stream = server.subscribe().await;
    let mut sender = server.grpc().await;
    let started = Instant::now();
    let send_time = grpc_send(&mut sender, "after", "churn").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(read_n(&mut stream, 1).await[0].send_time, send_time);
    assert!(
        elapsed < Duration::from_secs(1),
        "SendMessage took {elapsed:?} after churn"
    );
    server.stop().await.unwrap();
}
