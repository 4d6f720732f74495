//! Connections, subscription readiness and phase deadlines, shared by every
//! scenario.
//!
//! Readiness never relies on response headers (some servers send them only
//! with the first message). Instead [`probe_until_confirmed`] sends messages
//! from [`PROBE_AUTHOR`] until every subscriber has seen one; subscribers
//! ignore probe messages for everything else.
//!
//! Invariant: no await on the server is unbounded. A scenario runs each of
//! its phases under [`phase`], and every single request inside is bounded
//! too ([`REQUEST_LIMIT`]), so a server that accepts connections but never
//! answers ends the run with one line naming the phase, never a hang.

use messenger_proto::pb::SendMessageRequest;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Author of readiness probes; never counted as a measured message.
pub(crate) const PROBE_AUTHOR: &str = "__probe__";
/// How often a probe is sent while some subscriber has not seen one.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Connections opened at once, so the server's accept backlog never overflows.
const CONNECT_PARALLELISM: usize = 64;
/// Longest wait for one request's answer (a probe, a send, response headers).
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// Longest wait for one TCP connection.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Runs `work` as the phase `name`, bounded by `limit`: its error, or the
/// timeout, comes back as one line naming the phase.
pub(crate) async fn phase<T>(
    name: &str,
    limit: Duration,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("phase '{name}' failed: {e}")),
        Err(_) => Err(format!(
            "phase '{name}' did not finish within {limit:?} (is the server answering?)"
        )),
    }
}

/// `request`, or an error saying `what` got no answer within [`REQUEST_LIMIT`].
pub(crate) async fn answered<T>(
    what: &str,
    request: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_LIMIT, request).await {
        Ok(result) => result.map_err(|s| format!("{what} failed: {s}")),
        Err(_) => Err(format!("{what}: no answer within {REQUEST_LIMIT:?}")),
    }
}

/// One fresh HTTP/2 connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_LIMIT)
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {e:?}"))
}

/// How long opening `n` connections may take (the `connect` phase's limit).
pub(crate) fn connect_limit(n: usize) -> Duration {
    CONNECT_LIMIT + Duration::from_millis(10 * n as u64)
}

/// `n` connections to `addr`, opened at most [`CONNECT_PARALLELISM`] at a time.
pub(crate) async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, String> {
    let mut out = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while out.len() < n {
        while next < n && pending.len() < CONNECT_PARALLELISM {
            pending.spawn(connect(addr));
            next += 1;
        }
        let joined = pending.join_next().await.expect("a connect is pending");
        let channel = joined.map_err(|e| format!("connect task: {e}"))?;
        out.push(channel.map_err(|e| format!("connection {} of {n}: {e}", out.len() + 1))?);
    }
    Ok(out)
}

/// `n` connections, the i-th to `servers[i % servers.len()]`: spread over
/// the replicas of one chat.
pub(crate) async fn connect_spread(
    servers: &[SocketAddr],
    n: usize,
) -> Result<Vec<Channel>, String> {
    let m = servers.len().max(1);
    let mut per = Vec::with_capacity(m);
    for (j, server) in servers.iter().enumerate() {
        let count = (0..n).filter(|i| i % m == j).count();
        per.push(connect_many(*server, count).await?.into_iter());
    }
    Ok((0..n)
        .map(|i| per[i % m].next().expect("counted per server"))
        .collect())
}

/// How many subscribers have confirmed (seen a probe) or failed.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    confirmed: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    changed: Notify,
}

impl Readiness {
    pub(crate) fn confirm(&self) {
        self.confirmed.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// A subscriber could not subscribe or its stream ended during setup.
    pub(crate) fn fail(&self, why: String) {
        self.first_error
            .lock()
            .expect("no panics while holding the lock")
            .get_or_insert(why);
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    pub(crate) fn confirmed(&self) -> usize {
        self.confirmed.load(Ordering::Acquire)
    }

    pub(crate) fn failed(&self) -> usize {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .expect("no panics while holding the lock")
            .clone()
    }
}

/// Sends probes on `channel` until all `total` subscribers confirmed; fails
/// if any subscriber failed or `limit` passed, saying how many are missing.
pub(crate) async fn probe_until_confirmed(
    channel: Channel,
    ready: &Readiness,
    total: usize,
    limit: Duration,
) -> Result<(), String> {
    let mut client = MessengerServerClient::new(channel);
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        let (confirmed, failed) = (ready.confirmed(), ready.failed());
        if failed > 0 {
            let why = ready.first_error().unwrap_or_default();
            return Err(format!(
                "{failed} of {total} subscribers failed during setup ({confirmed} confirmed); first error: {why}{}",
                stream_limit_hint(&why)
            ));
        }
        if confirmed >= total {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {confirmed} of {total} subscribers saw a probe within {limit:?}; \
                 streams may be queued behind the server's concurrent-stream limit per \
                 connection (hyper's default is 200): use more --connections"
            ));
        }
        let probe = SendMessageRequest {
            author: PROBE_AUTHOR.to_owned(),
            text: "probe".to_owned(),
        };
        answered("probe SendMessage", client.send_message(probe)).await?;
        tokio::select! {
            _ = tick.tick() => {}
            () = ready.changed.notified() => {}
        }
    }
}

/// An explanation for errors that mean the server refused extra streams.
fn stream_limit_hint(why: &str) -> &'static str {
    let lower = why.to_ascii_lowercase();
    if lower.contains("refused") || lower.contains("concurrent") {
        " (the server refused a stream: it limits concurrent streams per HTTP/2 \
         connection, hyper's default is 200; use more --connections)"
    } else {
        ""
    }
}
