//! The watcher's verdicts and their timing, on real time with short bounds:
//! every wait is bounded by a timeout, and each assertion allows the
//! scheduler's slack in one direction only (never earlier than the rule).

use super::*;
use tokio::task::JoinHandle;

const HANDSHAKE: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(200);
/// Upper bound on how late a verdict may come on a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

fn limits() -> ConnLimits {
    ConnLimits {
        handshake_timeout_ms: HANDSHAKE.as_millis() as u64,
        idle_timeout_ms: IDLE.as_millis() as u64,
    }
}

struct Watched {
    handle: ConnHandle,
    stop: CancellationToken,
    verdict: JoinHandle<(Reason, Instant)>,
}

fn watch() -> Watched {
    let activity = Arc::new(Activity::new());
    let stop = CancellationToken::new();
    let handle = ConnHandle::new(Arc::clone(&activity), None);
    let doomed = doom(activity, limits(), stop.clone());
    let verdict = tokio::spawn(async move { (doomed.await, Instant::now()) });
    Watched {
        handle,
        stop,
        verdict,
    }
}

async fn verdict(w: Watched) -> (Reason, Instant) {
    tokio::time::timeout(HANDSHAKE + IDLE + CLOSE_LINGER + 5 * SLACK, w.verdict)
        .await
        .expect("the watcher reaches a verdict")
        .expect("the watcher does not panic")
}

#[tokio::test]
async fn no_request_within_the_handshake_bound_is_a_handshake_timeout() {
    let accepted = Instant::now();
    let (reason, at) = verdict(watch()).await;
    assert_eq!(reason, Reason::HandshakeTimeout);
    assert!(at >= accepted + HANDSHAKE && at < accepted + HANDSHAKE + SLACK);
}

#[tokio::test]
async fn requests_that_come_and_go_keep_the_connection_until_idle_after_the_last() {
    let w = watch();
    // Six requests, each a quarter of the idle bound after the previous one
    // ended: no gap reaches the bound, and together they outlast it.
    let mut last_end = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(IDLE / 4).await;
        let request = w.handle.begin();
        last_end = Instant::now();
        drop(request);
    }
    let (reason, at) = verdict(w).await;
    assert_eq!(reason, Reason::IdleTimeout);
    assert!(
        at >= last_end + IDLE,
        "closed {:?} after the last request",
        at - last_end
    );
    assert!(at < last_end + IDLE + SLACK);
}

#[tokio::test]
async fn a_request_in_flight_longer_than_the_idle_bound_holds_the_connection() {
    let w = watch();
    let request = w.handle.begin();
    tokio::time::sleep(3 * IDLE).await;
    assert!(!w.verdict.is_finished(), "closed with a request in flight");
    let ended = Instant::now();
    drop(request);
    let (reason, at) = verdict(w).await;
    assert_eq!(reason, Reason::IdleTimeout);
    assert!(at >= ended + IDLE && at < ended + IDLE + SLACK);
}

#[tokio::test]
async fn shutdown_closes_a_connection_without_requests_at_once() {
    let w = watch();
    let stopped = Instant::now();
    w.stop.cancel();
    let (reason, at) = verdict(w).await;
    assert_eq!(reason, Reason::Shutdown);
    assert!(at < stopped + SLACK);
}

#[tokio::test]
async fn shutdown_waits_for_the_request_in_flight_then_lingers() {
    let w = watch();
    let request = w.handle.begin();
    w.stop.cancel();
    tokio::time::sleep(CLOSE_LINGER + IDLE).await;
    assert!(!w.verdict.is_finished(), "closed with a request in flight");
    let ended = Instant::now();
    drop(request);
    let (reason, at) = verdict(w).await;
    assert_eq!(reason, Reason::Shutdown);
    assert!(at >= ended + CLOSE_LINGER && at < ended + CLOSE_LINGER + SLACK);
}

/// The in-memory socket the guarded tests read from (no peer address).
impl Peer for tokio::io::DuplexStream {
    fn peer(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// How long a read parked on a guarded socket with nothing to read takes
/// to fail, and its error: only the watcher's own wake-up can end it.
async fn parked_read(guarded: &mut Guarded<tokio::io::DuplexStream>) -> (io::Error, Instant) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(HANDSHAKE + IDLE + 5 * SLACK, guarded.read(&mut buf))
        .await
        .expect("the watcher's verdict wakes the parked read");
    (
        read.expect_err("a condemned socket's read fails"),
        Instant::now(),
    )
}

#[tokio::test]
async fn a_parked_read_learns_each_verdict_from_the_watchers_wake_up() {
    let hygiene = Hygiene::new(limits(), "grpc");
    // Handshake bound: no request ever starts.
    let (io, _peer) = tokio::io::duplex(64);
    let accepted = Instant::now();
    let mut guarded = hygiene.guard(io);
    let (error, at) = parked_read(&mut guarded).await;
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(error.to_string(), Reason::HandshakeTimeout.label());
    assert!(at >= accepted + HANDSHAKE && at < accepted + HANDSHAKE + SLACK);

    // Idle bound: the watcher sleeps until it, waking nobody meanwhile, and
    // the read parked across that sleep still hears of it.
    let (io, _peer) = tokio::io::duplex(64);
    let mut guarded = hygiene.guard(io);
    drop(guarded.handle().begin());
    let ended = Instant::now();
    let (error, at) = parked_read(&mut guarded).await;
    assert_eq!(error.to_string(), Reason::IdleTimeout.label());
    assert!(at >= ended + IDLE && at < ended + IDLE + SLACK);

    // Shutdown, with no request in flight: at once.
    let (io, _peer) = tokio::io::duplex(64);
    let mut guarded = hygiene.guard(io);
    let parked = tokio::spawn(async move { parked_read(&mut guarded).await });
    tokio::task::yield_now().await;
    let stopped = Instant::now();
    hygiene.shutdown();
    let (error, at) = parked.await.expect("the read does not panic");
    assert_eq!(error.to_string(), Reason::Shutdown.label());
    assert!(at < stopped + SLACK);
}
