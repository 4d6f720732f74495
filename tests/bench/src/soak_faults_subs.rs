//! The checked gRPC subscribers of `soak-faults` ([`crate::soak_faults`]):
//! `--subscribers` `ReadMessages` streams per server replica, through that
//! replica's [`crate::faults_proxy::Proxy`] (a `links` fault cuts them with
//! its client), which ask for offsets and resume after every break
//! (proto/CONTRACT.md, "Opt-in extensions").
//!
//! Resume, as our client does it: the first subscription asks for offsets
//! and starts at `messenger-head-offset`; every later one sends
//! `messenger-since: <epoch>:<offset of the last message>`. `messenger-recovered:
//! false` is a reported gap: in the same epoch the stream goes on live from
//! the head; in a new epoch the stream is re-opened at once from `<epoch>:0`,
//! so nothing of the new epoch is missed.
//!
//! Checks, per message, with no allocation ([`Delivery`]): the offset is the
//! last one plus 1 (anything else is a message skipped or repeated without a
//! reported gap: always a violation), `sendTime` strictly increases over the
//! subscriber's whole life, resumes included, and the (publisher, seq) id goes
//! into [`SubStats`] (duplicates, per-publisher order; loss against the
//! acknowledgements at the end, as for the clients' buffers).
//!
//! Invariant: a subscriber never gives up before `stop`; a failed subscribe is
//! retried every [`RETRY_EVERY`], so a fault's recovery ends only once every
//! subscriber holds the probes again ([`Seen`]).

use crate::conn::REQUEST_LIMIT;
use crate::delivery::Delivery;
use crate::subscriber::{SubStats, read_messages_with};
use messenger_proto::{
    EPOCH_METADATA, HEAD_OFFSET_METADATA, OFFSETS_METADATA, RECOVERED_METADATA, SINCE_METADATA,
};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

/// Pause after a subscribe that failed (a replica restarting, a link cut).
pub(crate) const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Checked subscribers sharing one HTTP/2 connection.
pub(crate) const STREAMS_PER_CONNECTION: usize = 8;

/// What the orchestrator sees of one running subscriber, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Seen {
    /// `sendTime` (unix nanos) of the newest message received, probes
    /// included: once it reaches an acknowledged probe's, the subscriber
    /// holds everything acknowledged before that probe (one total order).
    pub(crate) send_time: AtomicI64,
    /// The first subscription's headers arrived: it is registered, so it
    /// receives everything accepted from now on.
    pub(crate) subscribed: AtomicBool,
}

/// A subscriber's verdict on its streams.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) stats: SubStats,
    /// `messenger-recovered: false` answers.
    pub(crate) gaps: u64,
    /// Subscriptions after the first.
    pub(crate) resumes: u64,
    /// Messages whose offset was not the last one plus 1.
    pub(crate) out_of_sequence: u64,
    pub(crate) first_out_of_sequence: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    epoch: String,
    /// Offset of the last message received, or the head at subscription.
    offset: u64,
}

/// What the response headers of one subscription say.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// Read the stream from the position.
    Read,
    /// A new epoch: re-open from its start before reading anything.
    Again,
}

/// One subscriber's position and checks across its subscriptions.
struct Tracker {
    checked: Checked,
    position: Option<Position>,
    publishers: usize,
    last_send_time: i128,
    subscriptions: u64,
}

impl Tracker {
    fn new(publishers: usize) -> Self {
        Self {
            checked: Checked {
                stats: SubStats::new(publishers),
                gaps: 0,
                resumes: 0,
                out_of_sequence: 0,
                first_out_of_sequence: None,
            },
            position: None,
            publishers,
            last_send_time: i128::MIN,
            subscriptions: 0,
        }
    }

    /// `messenger-offsets: 1`, and `messenger-since` once a position is known.
    fn request(&self) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(OFFSETS_METADATA, AsciiMetadataValue::from_static("1"));
        if let Some(p) = &self.position
            && let Ok(value) = AsciiMetadataValue::try_from(format!("{}:{}", p.epoch, p.offset))
        {
            metadata.insert(SINCE_METADATA, value);
        }
        metadata
    }

    /// Reads a subscription's headers into the position, counting a
    /// reported gap.
    fn on_headers(&mut self, headers: &MetadataMap) -> Result<Opened, String> {
        let text = |key| headers.get(key).and_then(|v| v.to_str().ok());
        let (Some(epoch), Some(head)) = (
            text(EPOCH_METADATA),
            text(HEAD_OFFSET_METADATA).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            return Err(format!(
                "ReadMessages answered without {EPOCH_METADATA} and {HEAD_OFFSET_METADATA}"
            ));
        };
        self.subscriptions += 1;
        self.checked.resumes = self.subscriptions - 1;
        let Some(previous) = self.position.as_mut() else {
            self.position = Some(Position {
                epoch: epoch.to_owned(),
                offset: head,
            });
            return Ok(Opened::Read);
        };
        if text(RECOVERED_METADATA) == Some("true") {
            return Ok(Opened::Read);
        }
        self.checked.gaps += 1;
        if previous.epoch == epoch {
            previous.offset = head;
            return Ok(Opened::Read);
        }
        *previous = Position {
            epoch: epoch.to_owned(),
            offset: 0,
        };
        Ok(Opened::Again)
    }

    /// Checks one delivered message against the position and the ids seen.
    fn on_message(&mut self, msg: &Delivery) {
        let checked = &mut self.checked;
        let Some(position) = self.position.as_mut() else {
            return;
        };
        if msg.offset != position.offset + 1 {
            checked.out_of_sequence += 1;
            checked.first_out_of_sequence.get_or_insert_with(|| {
                format!(
                    "offset {} after {} in epoch {}",
                    msg.offset, position.offset, position.epoch
                )
            });
        }
        position.offset = position.offset.max(msg.offset);
        if msg.send_time <= self.last_send_time {
            checked.stats.reordered += 1;
        }
        self.last_send_time = msg.send_time;
        if msg.probe {
            return;
        }
        match msg.id.filter(|(p, _)| *p < self.publishers) {
            Some((p, seq)) => checked.stats.on_message(p, seq),
            None => checked.stats.foreign += 1,
        }
    }
}

/// Subscribes through `channel` and checks every delivery until `stop`.
pub(crate) async fn run(
    channel: Channel,
    publishers: usize,
    seen: Arc<Seen>,
    stop: CancellationToken,
) -> Checked {
    let mut t = Tracker::new(publishers);
    let mut stop = pin!(stop.cancelled_owned());
    loop {
        let subscribe = read_messages_with(channel.clone(), t.request());
        let opened = tokio::select! {
            () = &mut stop => return t.checked,
            r = tokio::time::timeout(REQUEST_LIMIT, subscribe) => r,
        };
        let opened = match opened {
            Ok(Ok(response)) => {
                let (headers, stream, _) = response.into_parts();
                t.on_headers(&headers).map(|opened| (opened, stream))
            }
            Ok(Err(status)) => Err(format!("ReadMessages refused: {status}")),
            Err(_) => Err(format!("ReadMessages: no headers within {REQUEST_LIMIT:?}")),
        };
        let stream = match opened {
            Ok((Opened::Read, stream)) => {
                seen.subscribed.store(true, Ordering::Release);
                stream
            }
            Ok((Opened::Again, _)) => continue,
            Err(why) => {
                t.checked.stats.ended = Some(why);
                tokio::select! {
                    () = &mut stop => return t.checked,
                    () = tokio::time::sleep(RETRY_EVERY) => continue,
                }
            }
        };
        let why = tokio::select! {
            biased;
            () = &mut stop => None,
            why = read(stream, &mut t, &seen) => Some(why),
        };
        let Some(why) = why else { return t.checked };
        t.checked.stats.ended = Some(why);
    }
}

/// Reads and checks one stream until it breaks: why.
async fn read(mut stream: Streaming<Delivery>, t: &mut Tracker, seen: &Seen) -> String {
    loop {
        let msg = match stream.message().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return "stream ended by the server".to_owned(),
            Err(status) => return format!("stream failed: {status}"),
        };
        t.on_message(&msg);
        seen.send_time
            .fetch_max(msg.send_time as i64, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(epoch: &str, head: u64, recovered: Option<bool>) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(EPOCH_METADATA, epoch.parse().expect("ascii"));
        m.insert(
            HEAD_OFFSET_METADATA,
            head.to_string().parse().expect("ascii"),
        );
        if let Some(r) = recovered {
            m.insert(RECOVERED_METADATA, r.to_string().parse().expect("ascii"));
        }
        m
    }

    fn msg(offset: u64, send_time: i128, id: Option<(usize, u64)>) -> Delivery {
        Delivery {
            probe: id.is_none(),
            id,
            send_time,
            sent_at: Some(1),
            offset,
        }
    }

    #[test]
    fn resumes_from_the_last_offset_and_counts_gaps() {
        let mut t = Tracker::new(2);
        assert!(t.request().get(SINCE_METADATA).is_none());
        assert!(t.on_headers(&MetadataMap::new()).is_err());
        assert_eq!(t.on_headers(&headers("e1", 4, None)), Ok(Opened::Read));
        t.on_message(&msg(5, 10, Some((0, 0))));
        t.on_message(&msg(6, 11, None));
        assert_eq!(
            t.request().get(SINCE_METADATA).map(|v| v.to_str().ok()),
            Some(Some("e1:6"))
        );
        assert_eq!(
            t.on_headers(&headers("e1", 9, Some(true))),
            Ok(Opened::Read)
        );
        t.on_message(&msg(7, 12, Some((1, 0))));
        assert_eq!((t.checked.gaps, t.checked.resumes), (0, 1));
        // Same epoch, history did not cover it: live from the head.
        assert_eq!(
            t.on_headers(&headers("e1", 20, Some(false))),
            Ok(Opened::Read)
        );
        t.on_message(&msg(21, 13, Some((0, 1))));
        // A new epoch: re-open from its start.
        assert_eq!(
            t.on_headers(&headers("e2", 3, Some(false))),
            Ok(Opened::Again)
        );
        assert_eq!(
            t.request().get(SINCE_METADATA).map(|v| v.to_str().ok()),
            Some(Some("e2:0"))
        );
        assert_eq!(
            t.on_headers(&headers("e2", 3, Some(true))),
            Ok(Opened::Read)
        );
        t.on_message(&msg(1, 14, Some((0, 2))));
        let c = &t.checked;
        assert_eq!((c.gaps, c.resumes, c.out_of_sequence), (2, 4, 0));
        assert_eq!(
            (c.stats.distinct, c.stats.duplicated, c.stats.reordered),
            (4, 0, 0)
        );
    }

    #[test]
    fn a_skipped_or_repeated_offset_and_a_duplicate_are_caught() {
        let mut t = Tracker::new(1);
        t.on_headers(&headers("e", 0, None)).expect("headers");
        t.on_message(&msg(1, 10, Some((0, 0))));
        t.on_message(&msg(3, 11, Some((0, 1))));
        t.on_message(&msg(3, 12, Some((0, 1))));
        t.on_message(&msg(4, 9, Some((0, 2))));
        let c = &t.checked;
        assert_eq!(c.out_of_sequence, 2);
        assert_eq!(
            c.first_out_of_sequence.as_deref(),
            Some("offset 3 after 1 in epoch e")
        );
        assert_eq!((c.stats.duplicated, c.stats.reordered), (1, 1));
    }
}
