//! [`Inline`] runs what its executor was handed, on wake-ups from any
//! thread, and ends with the connection's future.

use super::{Inline, InlineExecutor};
use hyper::rt::Executor;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// Stream futures handed over while the connection's future runs, each woken
/// from another thread, all complete on the connection's task; the
/// connection's future then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_futures_woken_from_other_threads_complete() {
    const STREAMS: usize = 200;
    let executor = InlineExecutor::default();
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let mut senders = Vec::new();
    for _ in 0..STREAMS {
        let (tx, rx) = oneshot::channel::<()>();
        senders.push(tx);
        let (done, all_done) = (Arc::clone(&done), Arc::clone(&all_done));
        executor.execute(async move {
            rx.await.expect("sent");
            if done.fetch_add(1, Ordering::SeqCst) + 1 == STREAMS {
                all_done.notify_one();
            }
        });
    }
    let conn = {
        let all_done = Arc::clone(&all_done);
        async move { all_done.notified().await }
    };
    let task = tokio::spawn(Inline::new(conn, &executor));
    std::thread::spawn(move || {
        for tx in senders {
            tx.send(()).expect("the stream future waits");
        }
    });
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("every stream future ran and the connection ended")
        .expect("no panic");
    assert_eq!(done.load(Ordering::SeqCst), STREAMS);
}

/// A stream future still pending when the connection's future completes is
/// dropped with it.
#[tokio::test]
async fn the_connection_ending_drops_its_stream_futures() {
    let executor = InlineExecutor::default();
    let (tx, rx) = oneshot::channel::<()>();
    executor.execute(async move {
        let _tx = tx;
        std::future::pending::<()>().await;
    });
    Inline::new(async {}, &executor).await;
    assert!(rx.await.is_err(), "the stream future was dropped");
}
