//! The soak's actors besides the fan-out publishers and subscribers:
//!
//! - [`http_sender`]: paced `POST /sendMessage` through a messenger-client;
//!   its acknowledgements count like a publisher's.
//! - [`client_flusher`]: flushes a client's buffer and checks it like a
//!   stream subscriber (order by sendTime string, duplicates, loss).
//!
//! The stream adversaries (churn, slow subscribers) are in
//! [`crate::soak_churn`].

use crate::conn::{self, PROBE_AUTHOR};
use crate::http::{Sender, handshake};
use crate::message;
use crate::publisher::{AUTHOR, PubStats};
use crate::report;
use crate::subscriber::SubStats;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
        message::encode(id, stats.sent, message::clock_nanos(), 64, &mut text);
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

/// The texts of the probe messages (author [`PROBE_AUTHOR`]) a flusher saw:
/// `soak-faults` times its recoveries by them.
pub(crate) type Probes = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// Flushes the client at `addr` every 100 ms until `stop`, then once more;
/// probe texts go into `probes` when given.
pub(crate) async fn client_flusher(
    addr: SocketAddr,
    publishers: usize,
    progress: std::sync::Arc<crate::subscriber::Progress>,
    stop: CancellationToken,
    probes: Option<Probes>,
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
                        if let Some(p) = &probes {
                            p.lock().expect("never poisoned").insert(m.text);
                        }
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
