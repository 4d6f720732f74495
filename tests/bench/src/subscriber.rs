//! One fan-out subscriber: reads its stream and checks it as it goes.
//!
//! Per message the work is kept tiny: a decode that allocates nothing
//! ([`Delivery`]), two clock reads (the bench's clock for the latency, the
//! host's for the end of the run), the sendTime order check, a fixed-width
//! id parse, one bit in a per-publisher bitset (exact duplicate detection),
//! one HDR record and one relaxed atomic store. Lost messages are counted at
//! the end against what the publishers were acknowledged for
//! ([`SubStats::received_of`]). Subscriber 0 of a `--pace first-receipt`
//! run also tells the publishers each receipt ([`Pace`]), and releases them
//! when its stream ends.

use crate::conn::Readiness;
use crate::delivery::{Delivery, READ_MESSAGES};
use crate::message::clock_nanos;
use crate::pace::Pace;
use crate::report;
use hdrhistogram::Histogram;
use messenger_proto::time::unix_nanos_now;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Opens `ReadMessages` on `channel`, decoding each message as a [`Delivery`].
pub(crate) async fn read_messages(channel: Channel) -> Result<Streaming<Delivery>, Status> {
    Ok(read_messages_with(channel, MetadataMap::new())
        .await?
        .into_inner())
}

/// [`read_messages`] with request `metadata` (the opt-in extensions); the
/// response keeps its headers.
pub(crate) async fn read_messages_with(
    channel: Channel,
    metadata: MetadataMap,
) -> Result<Response<Streaming<Delivery>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<(), Delivery>::default();
    let path = PathAndQuery::from_static(READ_MESSAGES);
    let request = Request::from_parts(metadata, tonic::Extensions::default(), ());
    grpc.server_streaming(request, path, codec).await
}

/// What the orchestrator can see of a running subscriber, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Progress {
    /// Distinct measured messages received so far.
    pub(crate) distinct: AtomicU64,
    /// The stream has ended (error or end of stream).
    pub(crate) ended: AtomicBool,
}

/// A subscriber's verdict on its stream.
#[derive(Debug)]
pub(crate) struct SubStats {
    /// Delivery latency, µs, measured messages only: receipt minus the
    /// publisher's send stamp, both on the bench's clock
    /// ([`crate::message::clock_nanos`]).
    pub(crate) latency: Histogram<u64>,
    /// Per publisher: bit `seq` set once message `seq` arrived.
    seen: Vec<Vec<u64>>,
    max_seq: Vec<Option<u64>>,
    pub(crate) distinct: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    /// Measured-looking messages whose text did not parse (another sender?).
    pub(crate) foreign: u64,
    /// Why the stream ended before the orchestrator stopped it.
    pub(crate) ended: Option<String>,
    /// Unix nanos of the last measured message received.
    pub(crate) last_receipt: i128,
}

impl SubStats {
    pub(crate) fn new(publishers: usize) -> Self {
        Self {
            latency: report::histogram(),
            seen: vec![Vec::new(); publishers],
            max_seq: vec![None; publishers],
            distinct: 0,
            duplicated: 0,
            reordered: 0,
            foreign: 0,
            ended: None,
            last_receipt: 0,
        }
    }

    /// Whether message `seq` of publisher `p` arrived.
    pub(crate) fn has(&self, p: usize, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        self.seen[p]
            .get(word)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// How many of publisher `p`'s sequence numbers below `end` arrived.
    pub(crate) fn received_of(&self, p: usize, end: u64) -> u64 {
        let bits = &self.seen[p];
        let full = (end / 64) as usize;
        let mut n: u64 = bits
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rem = end % 64;
        if let Some(w) = bits.get(full).filter(|_| rem > 0) {
            n += u64::from((w & ((1u64 << rem) - 1)).count_ones());
        }
        n
    }

    pub(crate) fn on_message(&mut self, publisher: usize, seq: u64) {
        let bits = &mut self.seen[publisher];
        let word = (seq / 64) as usize;
        if word >= bits.len() {
            bits.resize((word + 1).next_power_of_two(), 0);
        }
        let mask = 1u64 << (seq % 64);
        if bits[word] & mask != 0 {
            self.duplicated += 1;
            return;
        }
        bits[word] |= mask;
        self.distinct += 1;
        let max = &mut self.max_seq[publisher];
        match *max {
            Some(m) if seq < m => self.reordered += 1,
            _ => *max = Some(seq),
        }
    }
}

/// Reads one `ReadMessages` stream until `stop` is cancelled or it ends.
pub(crate) async fn run(
    channel: Channel,
    publishers: usize,
    ready: Arc<Readiness>,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> SubStats {
    run_pacing(channel, publishers, ready, progress, stop, None).await
}

/// [`run`], telling `pace` of every measured message it receives.
pub(crate) async fn run_pacing(
    channel: Channel,
    publishers: usize,
    ready: Arc<Readiness>,
    progress: Arc<Progress>,
    stop: CancellationToken,
    pace: Option<Arc<Pace>>,
) -> SubStats {
    let stats = read(channel, publishers, ready, progress, stop, pace.as_deref()).await;
    if let Some(pace) = &pace {
        pace.release();
    }
    stats
}

async fn read(
    channel: Channel,
    publishers: usize,
    ready: Arc<Readiness>,
    progress: Arc<Progress>,
    stop: CancellationToken,
    pace: Option<&Pace>,
) -> SubStats {
    let mut stats = SubStats::new(publishers);
    let mut confirmed = false;
    let mut stop = pin!(stop.cancelled_owned());
    let mut stream = tokio::select! {
        () = &mut stop => return stats,
        r = read_messages(channel) => match r {
            Ok(stream) => stream,
            Err(status) => {
                let why = format!("ReadMessages refused: {status}");
                ready.fail(why.clone());
                stats.ended = Some(why);
                progress.ended.store(true, Ordering::Release);
                return stats;
            }
        },
    };
    let mut last_send_time = i128::MIN;
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => break,
            next = stream.message() => next,
        };
        let msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                stats.ended = Some("stream ended by the server".to_owned());
                break;
            }
            Err(status) => {
                stats.ended = Some(format!("stream failed: {status}"));
                break;
            }
        };
        let received = clock_nanos();
        let now = unix_nanos_now();
        let sent = msg.send_time;
        if sent <= last_send_time {
            stats.reordered += 1;
        }
        last_send_time = sent;
        if msg.probe {
            if !confirmed {
                confirmed = true;
                ready.confirm();
            }
            continue;
        }
        match (msg.id.filter(|(p, _)| *p < publishers), msg.sent_at) {
            (Some((p, seq)), Some(sent_at)) => {
                stats.on_message(p, seq);
                if let Some(pace) = pace {
                    pace.received(p, seq);
                }
                let micros = received.saturating_sub(sent_at) / 1000;
                report::record(&mut stats.latency, micros);
            }
            _ => stats.foreign += 1,
        }
        stats.last_receipt = now;
        progress.distinct.store(stats.distinct, Ordering::Relaxed);
    }
    if let (false, Some(why)) = (confirmed, &stats.ended) {
        ready.fail(why.clone());
    }
    progress.ended.store(true, Ordering::Release);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_reorders_and_received() {
        let mut s = SubStats::new(2);
        for seq in [0, 1, 3, 2, 3, 70] {
            s.on_message(0, seq);
        }
        s.on_message(1, 5);
        assert_eq!((s.distinct, s.duplicated, s.reordered), (6, 1, 1));
        assert_eq!(s.received_of(0, 4), 4);
        assert_eq!(s.received_of(0, 71), 5);
        assert_eq!(s.received_of(0, 70), 4);
        assert!(s.has(1, 5) && !s.has(1, 4) && !s.has(1, 6400));
    }
}
