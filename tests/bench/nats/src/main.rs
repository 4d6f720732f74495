//! `messenger-bench-nats`: the broker anchor of `make bench`. Drives a
//! nats-server's core publish/subscribe the way `messenger-bench fanout`
//! drives a messenger server, so the two runs compare like for like:
//!
//! - K subscribers, each on its own connection, on one subject; P publishers,
//!   each on its own connection; the same payload size.
//! - At max rate each publisher has one message in flight: after `publish`
//!   it waits until the first subscriber has received that message, then
//!   sends the next. (Publish-and-flush alone lets the broker's cheap enqueue
//!   run far ahead of the subscribers, so every figure becomes queueing.)
//!   `messenger-bench fanout --pace first-receipt` applies the same rule to
//!   the messenger server (its `SendMessage` answers once the message is
//!   queued, before any delivery, so waiting for the answer alone would keep
//!   more messages in flight than this driver does); the suite uses it for
//!   every run it compares with this one.
//! - With `--rate`, publisher `i` of `P` publishes its `n`-th message at
//!   `start + (n·P + i) ÷ rate` ([`Schedule`]: one uniform rate, the
//!   publishers staggered, as `fanout --rate`), and does not wait for the
//!   receipt, so a slow delivery does not lower the offered load.
//! - A subscriber is ready once its `SUB` is flushed (the broker has it).
//! - Delivery latency is the publisher's send to the subscriber's receipt,
//!   on this process's monotonic clock: the stamp in the payload is read just
//!   before `publish`, the receipt as the subscriber takes the message. The
//!   messenger bench stamps its text just before `SendMessage` on its own
//!   monotonic clock, so both figures measure the same interval.
//!
//! Prints the report as JSON (stdout, and `--json FILE`) with the field
//! names of `messenger-bench fanout`'s report. Every phase is bounded.

mod args;
mod pace;

use args::{Args, USAGE, parse};
use async_nats::{Client, ConnectOptions};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use pace::{Pace, Schedule};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, timeout};

const SUBJECT: &str = "messenger.bench";
/// publisher id (8) + seq (8) + send stamp, [`clock_nanos`] (8).
const HEADER_LEN: usize = 24;
/// Bound of each setup step and of each message's delivery to the pacer.
const STEP_LIMIT: Duration = Duration::from_secs(30);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// What `delivery_latency_ms` measures (the words `messenger-bench fanout`
/// reports for its own).
const LATENCY_FROM: &str = "publisher's send to subscriber's receipt, bench clock";

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Nanoseconds since the first call in this process, on the monotonic clock.
fn clock_nanos() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// This process's, or `pid`'s, user+system CPU seconds from /proc.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
}

async fn step<T, E: std::fmt::Display>(
    phase: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match timeout(STEP_LIMIT, work).await {
        Ok(r) => r.map_err(|e| format!("phase '{phase}' failed: {e}")),
        Err(_) => Err(format!(
            "phase '{phase}' did not finish within {STEP_LIMIT:?}"
        )),
    }
}

async fn connect(server: &str) -> Result<Client, String> {
    let opts = ConnectOptions::new().subscription_capacity(1 << 20);
    step("connect", opts.connect(server)).await
}

struct SubStats {
    latency: Histogram<u64>,
    distinct: u64,
    duplicated_or_reordered: u64,
    last_receipt: u64,
}

async fn subscriber(
    mut sub: async_nats::Subscriber,
    publishers: usize,
    seen: Arc<AtomicU64>,
    pace: Option<Arc<Pace>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> SubStats {
    let mut s = SubStats {
        latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds"),
        distinct: 0,
        duplicated_or_reordered: 0,
        last_receipt: 0,
    };
    let mut next_seq = vec![0u64; publishers];
    let mut stop = stop;
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let received = clock_nanos();
        let now = unix_nanos();
        let b = &msg.payload[..];
        if b.len() < HEADER_LEN {
            continue;
        }
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (p, seq, sent) = (word(0) as usize, word(1), word(2));
        match next_seq.get_mut(p) {
            Some(n) if seq >= *n => {
                *n = seq + 1;
                s.distinct += 1;
            }
            _ => s.duplicated_or_reordered += 1,
        }
        s.latency
            .saturating_record((received.saturating_sub(sent) / 1000).clamp(1, 600_000_000));
        s.last_receipt = now;
        seen.store(s.distinct, Ordering::Relaxed);
        if let Some(pace) = pace.as_ref().filter(|_| p < publishers) {
            pace.next[p].store(seq + 1, Ordering::Release);
            pace.delivered[p].notify_one();
        }
    }
    s
}

async fn publisher(
    client: Client,
    id: usize,
    pace: Arc<Pace>,
    schedule: Option<Schedule>,
    payload: usize,
    end: Instant,
) -> Result<u64, String> {
    let mut seq = 0u64;
    let mut buf = BytesMut::new();
    while Instant::now() < end {
        if let Some(schedule) = &schedule {
            let due = schedule.due(seq);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        buf.reserve(payload.max(HEADER_LEN));
        buf.put_u64_le(id as u64);
        buf.put_u64_le(seq);
        buf.put_u64_le(clock_nanos());
        buf.put_bytes(b'x', payload.saturating_sub(HEADER_LEN));
        let body: Bytes = buf.split().freeze();
        step("load", client.publish(SUBJECT, body)).await?;
        seq += 1;
        if schedule.is_some() {
            continue;
        }
        let delivered = async {
            pace.wait(id, seq - 1).await;
            Ok::<_, String>(())
        };
        step("load", delivered).await?;
    }
    // At a fixed rate nothing waited on the last messages: the client may
    // still buffer them, and dropping it would lose them.
    step("load", client.flush()).await?;
    Ok(seq)
}

async fn run(a: Args) -> Result<serde_json::Value, String> {
    let (k, p) = (a.subscribers, a.publishers);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let progress: Vec<Arc<AtomicU64>> = (0..k).map(|_| Arc::default()).collect();
    let mut subs = Vec::with_capacity(k);
    let mut sub_clients = Vec::with_capacity(k);
    let pace = Arc::new(Pace::new(p));
    for (i, seen) in progress.iter().enumerate() {
        let c = connect(&a.server).await?;
        let sub = step("subscribe", c.subscribe(SUBJECT)).await?;
        step("subscribe", c.flush()).await?;
        subs.push(tokio::spawn(subscriber(
            sub,
            p,
            seen.clone(),
            (i == 0).then(|| pace.clone()),
            stop_rx.clone(),
        )));
        sub_clients.push(c);
    }
    let mut pubs = Vec::with_capacity(p);
    for _ in 0..p {
        pubs.push(connect(&a.server).await?);
    }
    let cpu0 = (cpu_seconds(None), cpu_seconds(a.server_pid));
    let start = Instant::now();
    let start_unix = unix_nanos();
    let end = start + Duration::from_secs_f64(a.duration);
    let tasks: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(id, c)| {
            let schedule = a.rate.map(|rate| Schedule::new(start, rate, p, id));
            tokio::spawn(publisher(c, id, pace.clone(), schedule, a.payload, end))
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.map_err(|e| format!("publisher task: {e}"))??;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let drain = Instant::now();
    let expected = accepted * k as u64;
    while drain.elapsed() < DRAIN_LIMIT
        && progress
            .iter()
            .any(|n| n.load(Ordering::Relaxed) < accepted)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _stopped = stop_tx.send(true);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("static bounds");
    let (mut deliveries, mut disorder, mut last) = (0, 0, 0);
    for t in subs {
        let s = step("stop", async { t.await.map_err(|e| e.to_string()) }).await?;
        latency.add(&s.latency).expect("same bounds");
        deliveries += s.distinct;
        disorder += s.duplicated_or_reordered;
        last = last.max(s.last_receipt);
    }
    let cpu1 = (cpu_seconds(None), cpu_seconds(a.server_pid));
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let delivery_secs = (last.saturating_sub(start_unix) as f64 / 1e9).max(1e-3);
    Ok(json!({
        "server": a.server, "broker": "nats-server", "subscribers": k, "publishers": p,
        "connections": k, "duration_secs": a.duration, "rate": a.rate,
        "pace": if a.rate.is_some() { "rate" } else { "first-receipt" }, "payload_bytes": a.payload.max(HEADER_LEN),
        "accepted": accepted, "accepted_per_sec": accepted as f64 / publish_secs,
        "deliveries": deliveries, "deliveries_per_sec": deliveries as f64 / delivery_secs,
        "delivery_latency_from": LATENCY_FROM, "delivery_latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
                                 "max": latency.max() as f64 / 1000.0 },
        "lost": expected.saturating_sub(deliveries), "duplicated_or_reordered": disorder,
        "bench_cpu_seconds": cpu1.0.zip(cpu0.0).map(|(b, a)| b - a),
        "server_cpu_seconds": cpu1.1.zip(cpu0.1).map(|(b, a)| b - a),
    }))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("messenger-bench-nats: usage: {e}");
            return ExitCode::from(2);
        }
    };
    let json_path = args.json.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args)) {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).expect("a Value serializes");
            println!("{text}");
            if let Some(path) = json_path
                && let Err(e) = std::fs::write(&path, text + "\n")
            {
                eprintln!("messenger-bench-nats: write {path}: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("messenger-bench-nats: {e}");
            ExitCode::FAILURE
        }
    }
}
