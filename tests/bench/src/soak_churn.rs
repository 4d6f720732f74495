//! The soak's stream adversaries:
//!
//! - [`churner`]: opens a stream on a fresh connection, reads it for a while,
//!   drops it, again; each stream must be in order and without duplicates.
//! - [`slow_subscriber`]: subscribes and never reads (small HTTP/2 windows),
//!   until the server counts a `slow` disconnect; then reads what it got, a
//!   gap-free prefix ending in `RESOURCE_EXHAUSTED`; then again.

use crate::conn::{self, PROBE_AUTHOR};
use crate::message;
use crate::soak_load::{metric, scrape};
use crate::subscriber::SubStats;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_proto::time::from_timestamp;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Endpoint;

/// Longest wait for the server to drop the slow subscriber.
const SLOW_DISCONNECT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default, Serialize)]
pub(crate) struct ChurnStats {
    pub(crate) streams: u64,
    pub(crate) messages: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// After a failed attempt: a short wait (ended early by `stop`), so a refused
/// connection is not retried in a hot loop.
async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
}

/// Streams of 100..1600 ms, each on a fresh connection, until `stop`.
pub(crate) async fn churner(
    server: SocketAddr,
    id: u64,
    publishers: usize,
    stop: CancellationToken,
) -> ChurnStats {
    let mut out = ChurnStats::default();
    let mut seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !stop.is_cancelled() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let lifetime = Duration::from_millis(100 + seed % 1500);
        let channel = match conn::connect(server).await {
            Ok(c) => c,
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
                pause(&stop).await;
                continue;
            }
        };
        let mut client = MessengerServerClient::new(channel);
        let mut stream = match client.read_messages(()).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                out.errors += 1;
                out.first_error.get_or_insert(s.to_string());
                pause(&stop).await;
                continue;
            }
        };
        out.streams += 1;
        let mut stats = SubStats::new(publishers);
        let mut last = i128::MIN;
        let until = Instant::now() + lifetime;
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(until) => break,
                next = stream.message() => next,
            };
            let Ok(Some(m)) = next else {
                out.errors += 1;
                out.first_error
                    .get_or_insert(format!("churn stream ended: {next:?}"));
                break;
            };
            let t = m.send_time.as_ref().map_or(0, from_timestamp);
            if t <= last {
                stats.reordered += 1;
            }
            last = t;
            out.messages += 1;
            if let Some((p, seq)) = message::decode(&m.text).filter(|(p, _)| *p < publishers) {
                stats.on_message(p, seq);
            }
        }
        out.duplicated += stats.duplicated;
        out.reordered += stats.reordered;
    }
    out
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct SlowStats {
    /// Subscribe, stall, get disconnected, read the prefix: completed rounds.
    pub(crate) cycles: u64,
    pub(crate) prefix_messages: u64,
    /// Rounds whose prefix had a gap, a duplicate or a reorder, or did not end in RESOURCE_EXHAUSTED.
    pub(crate) bad_cycles: u64,
    pub(crate) first_error: Option<String>,
}

/// Stalls a stream until the server disconnects it as slow, then checks it; repeats until `stop`.
pub(crate) async fn slow_subscriber(
    server: SocketAddr,
    metrics: SocketAddr,
    stop: CancellationToken,
) -> SlowStats {
    let mut out = SlowStats::default();
    while !stop.is_cancelled() {
        if let Err(e) = slow_cycle(server, metrics, &stop, &mut out).await {
            out.bad_cycles += 1;
            out.first_error.get_or_insert(e);
            if !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    out
}

/// The slow subscriber's stream window stays 64 KiB, so it stalls after
/// about 400 messages; its connection window is larger because h2 (0.4.20+)
/// budgets unread small DATA frames by half the connection window, and a
/// receiver holding more than that many small frames unread sends GOAWAY
/// ENHANCE_YOUR_CALM itself: the stream would die quietly instead of being
/// cut off as slow by the server.
const SLOW_CONNECTION_WINDOW: u32 = 4 << 20;

/// Bound of one step of a slow round (a scrape, a connect, a subscribe).
const STEP_LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP_LIMIT, f)
        .await
        .map_err(|_| format!("{what}: no answer within {STEP_LIMIT:?}"))
}

const SLOW_SERIES: &str = "messenger_subscriber_disconnects_total{reason=\"slow\"}";

async fn slow_cycle(
    server: SocketAddr,
    metrics: SocketAddr,
    stop: &CancellationToken,
    out: &mut SlowStats,
) -> Result<(), String> {
    let before = metric(&bounded("scrape", scrape(metrics)).await??, SLOW_SERIES).unwrap_or(0.0);
    let endpoint = Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| e.to_string())?
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(SLOW_CONNECTION_WINDOW)
        .http2_adaptive_window(false);
    let channel = bounded("slow subscriber connect", endpoint.connect())
        .await?
        .map_err(|e| format!("slow subscriber connect: {e}"))?;
    let mut client = MessengerServerClient::new(channel);
    let mut stream = bounded("slow subscriber ReadMessages", client.read_messages(()))
        .await?
        .map_err(|s| format!("slow subscriber refused: {s}"))?
        .into_inner();
    let deadline = Instant::now() + SLOW_DISCONNECT_LIMIT;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if metric(&bounded("scrape", scrape(metrics)).await??, SLOW_SERIES).unwrap_or(0.0) > before
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not disconnected as slow within {SLOW_DISCONNECT_LIMIT:?}"
            ));
        }
    }
    let mut next_seq: Vec<Option<u64>> = Vec::new();
    let mut last = i128::MIN;
    let end = loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message()).await;
        let m = match next {
            Err(_) => {
                return Err("the slow stream did not end within 30 s of its disconnect".into());
            }
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break Code::Ok,
            Ok(Err(status)) => break status.code(),
        };
        out.prefix_messages += 1;
        let t = m.send_time.as_ref().map_or(0, from_timestamp);
        if t <= last {
            return Err(format!(
                "slow prefix out of order at message {}",
                out.prefix_messages
            ));
        }
        last = t;
        if let Some((p, seq)) = message::decode(&m.text).filter(|_| m.author != PROBE_AUTHOR) {
            if next_seq.len() <= p {
                next_seq.resize(p + 1, None);
            }
            if next_seq[p].is_some_and(|want| want != seq) {
                return Err(format!(
                    "slow prefix has a gap: publisher {p} jumped to {seq} from {:?}",
                    next_seq[p]
                ));
            }
            next_seq[p] = Some(seq + 1);
        }
    };
    if end != Code::ResourceExhausted {
        return Err(format!(
            "slow stream ended with {end:?}, not ResourceExhausted"
        ));
    }
    out.cycles += 1;
    Ok(())
}
