//! `http`: keep-alive `POST /sendMessage` load on a messenger-client over a
//! fixed set of C HTTP/1.1 connections (raw hyper, one request in flight per
//! connection), for the duration.
//!
//! The client's buffer fills during a long run; it drops the oldest messages
//! with one warning, which does not affect `/sendMessage`.
//!
//! Every connect and request is bounded by [`conn::REQUEST_LIMIT`], and the
//! `load` phase by the duration plus that limit ([`conn::phase`]); a run in
//! which no request succeeded fails.

use crate::cli::{HttpArgs, duration};
use crate::conn;
use crate::procfs::{self, ServerWatch};
use crate::report::{self, histogram};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug, Serialize)]
pub(crate) struct LatencyMs {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct HttpReport {
    pub(crate) client: String,
    pub(crate) connections: usize,
    pub(crate) duration_secs: f64,
    pub(crate) requests: u64,
    pub(crate) requests_per_sec: f64,
    pub(crate) latency_ms: LatencyMs,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) bench_cpu_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_seconds: Option<f64>,
}

struct ConnStats {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

pub(crate) async fn run(args: HttpArgs) -> Result<(), String> {
    let run_for = duration(args.duration)?;
    if args.connections == 0 {
        return Err("--connections must be at least 1".to_owned());
    }
    let client_watch = ServerWatch::start(args.client_pid)?;
    let server_watch = ServerWatch::start(args.server_pid)?;
    let cpu_start = procfs::self_cpu_seconds();
    let start = Instant::now();
    let end = start + run_for;
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.connections)
        .map(|id| tokio::spawn(connection(args.client, id, end, done.clone())))
        .collect();
    let bar = report::progress("http", run_for);
    while Instant::now() < end {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!("{} requests", done.load(Ordering::Relaxed)));
    }
    bar.finish_and_clear();
    let stats = conn::phase("load", conn::REQUEST_LIMIT * 2, async {
        let mut stats = Vec::with_capacity(tasks.len());
        for task in tasks {
            stats.push(task.await.map_err(|e| format!("connection task: {e}"))?);
        }
        Ok(stats)
    })
    .await?;
    let mut latency = histogram();
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for s in stats {
        latency.add(&s.latency).expect("same histogram bounds");
        ok += s.ok;
        errors += s.errors;
        first_error = first_error.or(s.first_error);
    }
    if ok == 0 {
        return Err(format!(
            "phase 'load' failed: no request succeeded; first error: {}",
            first_error.unwrap_or_else(|| "none".to_owned())
        ));
    }
    let secs = start.elapsed().as_secs_f64();
    let report = HttpReport {
        client: args.client.to_string(),
        connections: args.connections,
        duration_secs: args.duration,
        requests: ok,
        requests_per_sec: ok as f64 / secs,
        latency_ms: LatencyMs {
            p50: latency.value_at_quantile(0.5) as f64 / 1000.0,
            p99: latency.value_at_quantile(0.99) as f64 / 1000.0,
            max: latency.max() as f64 / 1000.0,
        },
        errors,
        first_error,
        bench_cpu_seconds: procfs::self_cpu_seconds() - cpu_start,
        client_cpu_seconds: client_watch.map(|w| w.finish().0),
        server_cpu_seconds: server_watch.map(|w| w.finish().0),
    };
    report::emit("http", &report, args.json.as_deref())
}

/// One keep-alive connection sending requests back to back until `end`;
/// reconnects after a connection-level failure.
async fn connection(addr: SocketAddr, id: usize, end: Instant, done: Arc<AtomicU64>) -> ConnStats {
    let mut stats = ConnStats {
        latency: histogram(),
        ok: 0,
        errors: 0,
        first_error: None,
    };
    let mut seq: u64 = 0;
    while Instant::now() < end {
        let mut sender = match handshake(addr).await {
            Ok(sender) => sender,
            Err(e) => {
                stats.fail(e);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < end {
            let body = format!(r#"{{"author":"bench-http","text":"c{id}-{seq}"}}"#);
            seq += 1;
            let request = Request::post("/sendMessage")
                .header(hyper::header::HOST, "bench")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("static request parts are valid");
            let t0 = Instant::now();
            let exchange = async {
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = response.status();
                match response.into_body().collect().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(body) => Err(format!("HTTP {status}: {:?}", body.to_bytes())),
                    Err(e) => Err(format!("reading response body: {e}")),
                }
            };
            let result = tokio::time::timeout(conn::REQUEST_LIMIT, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "POST /sendMessage: no answer within {:?}",
                        conn::REQUEST_LIMIT
                    ))
                });
            let timed_out = result.as_ref().is_err_and(|e| e.contains("no answer"));
            match result {
                Ok(()) => {
                    report::record(&mut stats.latency, t0.elapsed().as_micros() as u64);
                    stats.ok += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.fail(e);
                    // A timed-out exchange leaves the connection unusable.
                    if timed_out || sender.is_closed() {
                        break;
                    }
                }
            }
        }
    }
    stats
}

impl ConnStats {
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection to `addr`; the TCP connect is bounded by
/// [`conn::REQUEST_LIMIT`].
pub(crate) async fn handshake(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = tokio::time::timeout(conn::REQUEST_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            format!(
                "connect to {addr}: no answer within {:?}",
                conn::REQUEST_LIMIT
            )
        })?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}
