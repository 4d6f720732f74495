//! The soak's actors besides the fan-out publishers and subscribers:
//!
//! - [`http_sender`]: paced `POST /sendMessage` through a messenger-client;
//!   its acknowledgements count like a publisher's.
//! - [`client_flusher`]: flushes a client's buffer and checks it like a
//!   stream subscriber (order by sendTime string, duplicates, loss).
//! - [`churner`]: opens a stream on a fresh connection, reads it for a while,
//!   drops it, again; each stream must be in order and without duplicates.
//! - [`slow_subscriber`]: subscribes and never reads (small HTTP/2 windows),
//!   until the server counts a `slow` disconnect; then reads what it got, a
//!   gap-free prefix ending in `RESOURCE_EXHAUSTED`; then again.

use crate::conn::{self, PROBE_AUTHOR};
use crate::http::{Sender, handshake};
use crate::message;
use crate::publisher::{AUTHOR, PubStats};
use crate::report;
use crate::subscriber::SubStats;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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

/// One HTTP/1.1 request on a keep-alive connection: (status, body).
pub(crate) async fn http(
    sender: &mut Sender,
    method: &str,
    path: &str,
    body: String,
) -> Result<(u16, Bytes), String> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "soak")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await;
        Ok((status, body.map_err(|e| e.to_string())?.to_bytes()))
    };
    tokio::time::timeout(conn::REQUEST_LIMIT, exchange)
        .await
        .map_err(|_| {
            format!(
                "{method} {path}: no answer within {:?}",
                conn::REQUEST_LIMIT
            )
        })?
}

/// The value of an unlabelled or exactly-labelled series in Prometheus text.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /metrics` at `addr`, one fresh connection.
pub(crate) async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut sender = handshake(addr).await?;
    let (status, body) = http(&mut sender, "GET", "/metrics", String::new()).await?;
    if status != 200 {
        return Err(format!("GET {addr}/metrics: HTTP {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends `text`s numbered as publisher `id` through the client at `addr`,
/// `rate` per second, until `end`.
pub(crate) async fn http_sender(addr: SocketAddr, id: usize, rate: f64, end: Instant) -> PubStats {
    let mut stats = PubStats {
        sent: 0,
        failed: Vec::new(),
        latency: report::histogram(),
        first_error: None,
    };
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut text = String::new();
    let mut sender = handshake(addr).await.ok();
    loop {
        let due = start + interval.mul_f64(stats.sent as f64);
        if due >= end {
            return stats;
        }
        tokio::time::sleep_until(due).await;
        message::encode(id, stats.sent, 64, &mut text);
        let body = serde_json::json!({ "author": AUTHOR, "text": text }).to_string();
        let t0 = Instant::now();
        let result = match &mut sender {
            Some(s) => http(s, "POST", "/sendMessage", body).await,
            None => Err("not connected".to_owned()),
        };
        let seq = stats.sent;
        stats.sent += 1;
        match result {
            Ok((200, _)) => report::record(&mut stats.latency, t0.elapsed().as_micros() as u64),
            other => {
                stats.failed.push(seq);
                let why = match other {
                    Ok((status, body)) => {
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                    }
                    Err(e) => e,
                };
                stats.first_error.get_or_insert(why);
                // A new connection for the next send (this one may be broken).
                sender = handshake(addr).await.ok();
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Flushed {
    author: String,
    text: String,
    #[serde(rename = "sendTime")]
    send_time: String,
}

/// Flushes the client at `addr` every 100 ms until `stop`, then once more.
pub(crate) async fn client_flusher(
    addr: SocketAddr,
    publishers: usize,
    progress: std::sync::Arc<crate::subscriber::Progress>,
    stop: CancellationToken,
) -> SubStats {
    let mut stats = SubStats::new(publishers);
    let mut last = String::new();
    let mut sender = handshake(addr).await.ok();
    loop {
        let stopping = stop.is_cancelled();
        let result = match &mut sender {
            Some(s) => http(s, "POST", "/getAndFlushMessages", String::new()).await,
            None => Err("not connected".to_owned()),
        };
        match result.and_then(|(status, body)| match status {
            200 => serde_json::from_slice::<Vec<Flushed>>(&body).map_err(|e| e.to_string()),
            s => Err(format!("flush: HTTP {s}")),
        }) {
            Ok(batch) => {
                for m in batch {
                    if m.send_time <= last {
                        stats.reordered += 1;
                    }
                    last = m.send_time;
                    if m.author == PROBE_AUTHOR {
                        continue;
                    }
                    match message::decode(&m.text).filter(|(p, _)| *p < publishers) {
                        Some((p, seq)) => stats.on_message(p, seq),
                        None => stats.foreign += 1,
                    }
                }
                progress
                    .distinct
                    .store(stats.distinct, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                stats.ended.get_or_insert(e);
                sender = handshake(addr).await.ok();
            }
        }
        if stopping {
            return stats;
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

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
