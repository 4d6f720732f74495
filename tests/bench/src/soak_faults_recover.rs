//! Recovery in `soak-faults` ([`crate::soak_faults`]): probes sent through
//! every replica until acknowledged, then waited for in every checked
//! reader, the clients' buffers ([`Probes`], by text) and the gRPC
//! subscribers ([`Seen`], by `sendTime`).
//!
//! The order is total and `sendTime` increases along it, so a reader that
//! holds an acknowledged probe, or anything stamped after it, holds
//! everything acknowledged before it: readiness at start, each fault's
//! delivery recovery and the drain at the end all wait on this.

use crate::conn::{self, PROBE_AUTHOR};
use crate::soak_faults_subs::Seen;
use crate::soak_load::Probes;
use messenger_proto::pb::SendMessageRequest;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait for one probe's answer.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// Pause between probes through a replica that has not acknowledged one.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// The readers a recovery waits for.
#[derive(Clone, Default)]
pub(crate) struct Watched {
    /// Per client: the probe texts its buffer held.
    pub(crate) clients: Vec<Probes>,
    /// Per checked gRPC subscriber: the newest `sendTime` it received.
    pub(crate) subscribers: Vec<Arc<Seen>>,
}

/// Sends probes through every replica at once, each until one is
/// acknowledged, then waits until every client and subscriber holds all of
/// them. Returns each replica's send recovery and the delivery recovery,
/// since `t0`, the fault's injection.
pub(crate) async fn recover(
    grpc: &[SocketAddr],
    watched: &Watched,
    tag: &str,
    t0: Instant,
    limit: Duration,
) -> Result<(Vec<Duration>, Duration), String> {
    let deadline = t0 + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, addr) in grpc.iter().enumerate() {
        let (addr, tag) = (*addr, tag.to_owned());
        tasks.spawn(async move { (i, first_ack(addr, &tag, i, t0, deadline).await) });
    }
    let mut texts = Vec::new();
    let mut newest = i64::MIN;
    let mut sent = vec![Duration::ZERO; grpc.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, acked) = joined.map_err(|e| format!("probe task: {e}"))?;
        let (text, send_time, after) = acked?;
        texts.push(text);
        newest = newest.max(send_time);
        sent[i] = after;
    }
    loop {
        let mut missing: Vec<String> = (0..watched.clients.len())
            .filter(|&c| {
                let seen = watched.clients[c].lock().expect("never poisoned");
                !texts.iter().all(|t| seen.contains(t))
            })
            .map(|c| format!("client{}", c + 1))
            .collect();
        let behind = watched
            .subscribers
            .iter()
            .filter(|s| s.send_time.load(Ordering::Acquire) < newest)
            .count();
        if behind > 0 {
            missing.push(format!(
                "{behind} of {} gRPC subscribers",
                watched.subscribers.len()
            ));
        }
        if missing.is_empty() {
            return Ok((sent, t0.elapsed()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "probes {texts:?} acknowledged but not delivered to {} within {limit:?}",
                missing.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Probes through `addr` every [`PROBE_EVERY`] until one is acknowledged:
/// its text, its `sendTime` (unix nanos) and when, since `t0`.
async fn first_ack(
    addr: SocketAddr,
    tag: &str,
    i: usize,
    t0: Instant,
    deadline: Instant,
) -> Result<(String, i64, Duration), String> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let text = format!("{tag}-{i}-{attempt}-{}", crate::message::clock_nanos());
        let last_error = match probe(addr, &text).await {
            Ok(send_time) => return Ok((text, send_time, t0.elapsed())),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "no probe through {addr} acknowledged within {:?} ({attempt} tries; last: {last_error})",
                deadline - t0
            ));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// One probe on a fresh connection: its `sendTime`, unix nanos.
async fn probe(addr: SocketAddr, text: &str) -> Result<i64, String> {
    let attempt = async {
        let channel = conn::connect(addr).await?;
        let mut client = MessengerServerClient::new(channel);
        let request = SendMessageRequest {
            author: PROBE_AUTHOR.to_owned(),
            text: text.to_owned(),
        };
        let answer = client
            .send_message(request)
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        let stamp = answer
            .into_inner()
            .send_time
            .ok_or("answer without sendTime")?;
        Ok(messenger_proto::time::from_timestamp(&stamp) as i64)
    };
    tokio::time::timeout(PROBE_LIMIT, attempt)
        .await
        .map_err(|_| format!("no answer within {PROBE_LIMIT:?}"))?
}
