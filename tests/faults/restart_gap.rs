//! A graceful server restart is no gap (issue 26, item 7): SIGTERM drains
//! every stream to the head and, to a caller that asked for offsets, ends it
//! with the trailer `messenger-last-offset`; a client holding that offset
//! re-subscribes to the new server's epoch without reporting a gap. After a
//! kill -9 nothing says the stream was drained, and the gap is still reported.

use crate::HEAVY;
use messenger_proto::pb::ServerMessageResponse;
use messenger_tests::procs::{ClientProc, spawn_client, spawn_server};
use messenger_tests::prom::{Metrics, wait_metrics};
use messenger_tests::*;
use tonic::{Code, Status, Streaming};

const GAP_WARNING: &str = "stream resumed with a gap";

fn gaps(m: &Metrics) -> f64 {
    m.sum("messenger_client_resumes_total", &[("result", "gap")])
}

/// Waits until `client` has opened its `n`th stream since it started (the
/// resume decision is made before a stream counts) and is connected.
async fn reconnected(client: &ClientProc, n: f64) -> Metrics {
    wait_metrics(&client.metrics_url(), "re-subscribed", |m| {
        m.value("messenger_client_stream_reconnects_total", &[]) >= Some(n)
            && m.value("messenger_client_stream_connected", &[]) == Some(1.0)
    })
    .await
}

fn warned(client: &ClientProc) -> usize {
    let lines = client.proc.lines();
    lines
        .iter()
        .filter(|l| l.text.contains(GAP_WARNING))
        .count()
}

/// Reads `stream` to its end, returning the end status.
async fn end_of(mut stream: Streaming<ServerMessageResponse>) -> Status {
    within("stream ends", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_is_no_gap_and_a_kill9_still_is() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let port = server.grpc_addr.port().to_string();
    let client = spawn_client(server.grpc_addr, &[]).await;
    let plain = server.subscribe().await;
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert(messenger_proto::OFFSETS_METADATA, "1".parse().unwrap());
    let with_offsets = within("ReadMessages", server.grpc().await.read_messages(request))
        .await
        .expect("subscribe with offsets")
        .into_inner();
    client.send("a", "before").await;
    assert_eq!(client.collect(1).await[0].text, "before");

    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
    let (plain, with_offsets) = (end_of(plain).await, end_of(with_offsets).await);
    assert_eq!(plain.code(), Code::Unavailable, "{plain:?}");
    assert!(
        plain.metadata().get("messenger-last-offset").is_none(),
        "opt-in only: {plain:?}"
    );
    assert_eq!(with_offsets.code(), Code::Unavailable, "{with_offsets:?}");
    assert_eq!(
        with_offsets.metadata().get("messenger-last-offset"),
        Some(&"1".parse().unwrap()),
        "{with_offsets:?}"
    );

    let restarted = spawn_server(&[("MESSENGER_SERVER_PORT", port.as_str())]).await;
    let m = reconnected(&client, 1.0).await;
    let (graceful_gaps, graceful_warnings) = (gaps(&m), warned(&client));
    let sent = client.send("a", "after a graceful restart").await;
    assert_eq!(client.collect(1).await[0].send_time, sent);

    restarted.proc.kill9_and_wait().await;
    let _again = spawn_server(&[("MESSENGER_SERVER_PORT", port.as_str())]).await;
    let m = reconnected(&client, 2.0).await;
    let (crash_gaps, crash_warnings) = (gaps(&m) - graceful_gaps, warned(&client));
    println!(
        "restart gap: after SIGTERM + restart the client reported {graceful_gaps} gaps \
         ({graceful_warnings} WARN lines); after kill -9 + restart {crash_gaps} \
         ({crash_warnings} WARN lines in all)"
    );
    assert_eq!(
        (graceful_gaps, graceful_warnings),
        (0.0, 0),
        "a drained stream is no gap\n{}",
        client.proc.tail()
    );
    assert_eq!(
        (crash_gaps, crash_warnings),
        (1.0, 1),
        "a crash may have lost messages\n{}",
        client.proc.tail()
    );
}
