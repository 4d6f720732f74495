//! Reliability under faults, overload and hostile input: the real binaries
//! (or the real libraries in-process) on 127.0.0.1:0, with real kills, a
//! faulty TCP proxy and raw HTTP/2 frames. Each test prints the figure it
//! proves (`cargo test --release --test faults -- --nocapture`).

mod crash;
mod dead_streams;
mod drain;
mod frames;
mod hygiene;
mod limits;
mod network;
mod restart_gap;
mod resume;
mod send_time_state;
mod shutdown_export;
mod slow_consumer;
mod status;

use messenger_tests::WAIT;
pub(crate) use messenger_tests::poll_until;

/// Serialises the tests of this binary: they measure latency, memory and
/// timing windows, and must not measure each other.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET url` and its status; `None` if the connection failed.
pub(crate) async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    match tokio::time::timeout(WAIT, http.get(url).send()).await {
        Ok(Ok(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}
