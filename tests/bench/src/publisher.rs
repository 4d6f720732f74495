//! One fan-out publisher: sends numbered messages on its own connection, one
//! request in flight at a time, paced to a rate (on the staggered
//! [`Schedule`]) or as fast as the pacing rule allows ([`crate::pace`]: the
//! acknowledgement, or also subscriber 0's receipt of the previous message),
//! until a deadline. With one request in flight, the server's total order
//! must deliver each publisher's messages in sequence order. A send
//! unanswered within [`conn::REQUEST_LIMIT`] counts as failed, and so does a
//! message subscriber 0 has not received within it (the publisher then stops).

use crate::conn;
use crate::message;
use crate::pace::{Pace, Schedule};
use crate::report;
use hdrhistogram::Histogram;
use messenger_proto::pb::SendMessageRequest;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Author of measured messages.
pub(crate) const AUTHOR: &str = "bench";

/// What one publisher sent and was acknowledged for.
#[derive(Debug)]
pub(crate) struct PubStats {
    /// Sequence numbers used: `0..sent`.
    pub(crate) sent: u64,
    /// Sequence numbers whose `SendMessage` failed (not acknowledged).
    pub(crate) failed: Vec<u64>,
    /// `SendMessage` round trip, µs, acknowledged sends only.
    pub(crate) latency: Histogram<u64>,
    pub(crate) first_error: Option<String>,
}

impl PubStats {
    pub(crate) fn acked(&self) -> u64 {
        self.sent - self.failed.len() as u64
    }
}

/// How a publisher paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// Messages per second over all publishers; `None` = back to back.
    pub(crate) rate: Option<f64>,
    /// How many publishers share `rate` (their schedules are staggered).
    pub(crate) publishers: usize,
    pub(crate) payload: usize,
}

pub(crate) async fn run(
    id: usize,
    channel: Channel,
    plan: Plan,
    accepted: Arc<AtomicU64>,
) -> PubStats {
    run_paced(id, channel, plan, accepted, None).await
}

/// [`run`]; with `pace`, each next send also waits until subscriber 0 has
/// the previous message ([`crate::pace::Rule::FirstReceipt`]).
pub(crate) async fn run_paced(
    id: usize,
    channel: Channel,
    plan: Plan,
    accepted: Arc<AtomicU64>,
    pace: Option<Arc<Pace>>,
) -> PubStats {
    let mut client = MessengerServerClient::new(channel);
    let mut stats = PubStats {
        sent: 0,
        failed: Vec::new(),
        latency: report::histogram(),
        first_error: None,
    };
    let mut text = String::with_capacity(plan.payload.max(message::HEADER_LEN));
    let schedule = plan
        .rate
        .map(|rate| Schedule::new(plan.start, rate, plan.publishers, id));
    loop {
        if let Some(schedule) = &schedule {
            let due = schedule.due(stats.sent);
            // Behind schedule (the server can't carry the rate) still ends
            // at the deadline: the report's accepted/s shows the shortfall.
            if due >= plan.end || Instant::now() >= plan.end {
                break;
            }
            tokio::time::sleep_until(due).await;
        } else if Instant::now() >= plan.end {
            break;
        }
        let seq = stats.sent;
        message::encode(id, seq, message::clock_nanos(), plan.payload, &mut text);
        let request = SendMessageRequest {
            author: AUTHOR.to_owned(),
            text: text.clone(),
        };
        let t0 = Instant::now();
        let result = conn::answered("SendMessage", client.send_message(request)).await;
        stats.sent += 1;
        match result {
            Ok(_) => {
                report::record(&mut stats.latency, t0.elapsed().as_micros() as u64);
                accepted.fetch_add(1, Ordering::Relaxed);
                let Some(pace) = &pace else { continue };
                let received = tokio::time::timeout(conn::REQUEST_LIMIT, pace.wait(id, seq));
                if received.await.is_err() {
                    let why = format!(
                        "subscriber 0 did not receive message {seq} within {:?}",
                        conn::REQUEST_LIMIT
                    );
                    stats.first_error.get_or_insert(why);
                    break;
                }
            }
            Err(e) => {
                stats.failed.push(seq);
                stats.first_error.get_or_insert(e);
                // A failing server answers at once; don't spin on it.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    stats
}
