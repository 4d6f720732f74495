//! Reliability under faults, overload and hostile input: the real binaries
//! (or the real libraries in-process) on 127.0.0.1:0, with real kills, a
//! faulty TCP proxy and raw HTTP/2 frames. Each test prints the figure it
//! proves (`cargo test --release --test faults -- --nocapture`).

mod crash;
mod drain;
mod frames;
mod hygiene;
mod limits;
mod network;
mod resume;
mod slow_consumer;
mod status;

use messenger_tests::WAIT;
use std::future::Future;
use std::time::{Duration, Instant};

/// Serialises the tests of this binary: they measure latency, memory and
/// timing windows, and must not measure each other.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `probe` every 20 ms until it returns `Some`, failing after `limit`.
/// Returns the value and how long it took. For conditions that have no event
/// to wait on (an HTTP status, a metric in another process).
pub(crate) async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut probe: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET url` and its status; `None` if the connection failed.
pub(crate) async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    match tokio::time::timeout(WAIT, http.get(url).send()).await {
        Ok(Ok(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}
