//! The operator's view on the real server binary: `GET /debug/subscribers`
//! lists a stalled subscriber with its queue depth, and SIGUSR2 logs the same
//! dump while the process keeps serving.

use messenger_tests::procs::spawn_server;
use messenger_tests::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_dump_shows_a_stalled_subscriber_and_sigusr2_logs_it() {
    let server = spawn_server(&[("MESSENGER_SUBSCRIBER_QUEUE", "4096")]).await;
    // Never read: its HTTP/2 window fills and the rest waits in its queue.
    let _stalled = server.subscribe().await;
    let mut grpc = server.grpc().await;
    // 8 MiB: more than the HTTP/2 windows and socket buffers take.
    let text = "q".repeat(16 * 1024);
    for _ in 0..500 {
        grpc_send(&mut grpc, "a", &text).await.unwrap();
    }
    let url = format!("http://{}/debug/subscribers", server.metrics_addr);
    let dump: Value = within("debug dump", async {
        reqwest::get(&url).await.unwrap().json().await.unwrap()
    })
    .await;
    let subs = dump.as_array().expect("one JSON array");
    assert_eq!(subs.len(), 1, "{dump}");
    let s = &subs[0];
    let depth = s["queue_depth"].as_u64().unwrap();
    assert!(
        depth > 0,
        "the stalled subscriber's queue holds messages: {s}"
    );
    assert_eq!(s["queue_capacity"], 4096);
    assert_eq!(s["delivered"].as_u64().unwrap() + depth, 500, "{s}");
    assert_eq!(s["resumed"], false);
    assert_eq!(s["wants_trace_context"], false);
    assert!(s["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{s}");
    assert!(s["connected_since"].as_str().unwrap().ends_with('Z'), "{s}");

    server.proc.sigusr2();
    server
        .proc
        .wait_line("the dump's summary", |l| {
            l.text.contains("SIGUSR2 debug dump") && l.text.contains("history_messages=500")
        })
        .await;
    let line = server
        .proc
        .wait_line("one line for the subscriber", |l| {
            l.text.contains("SIGUSR2 debug dump: subscriber")
        })
        .await;
    assert!(
        line.text.contains(&format!("queue_depth={depth}")),
        "{}",
        line.text
    );
    // Still serving.
    grpc_send(&mut grpc, "a", "after the dump").await.unwrap();
}
