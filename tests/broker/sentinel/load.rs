//! Load through messenger replicas on a Sentinel topology, and what every
//! subscriber held at the end: senders through each replica (acknowledged
//! and refused sends recorded, with the time of each replica's first
//! acknowledged send after a given instant), and one raw subscriber per
//! replica that re-subscribes after a stream ends "history lost" (counting
//! the gap) and replays the new epoch from its start.

use crate::loss::read;
use messenger_tests::procs::ServerProc;
use messenger_tests::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tonic::Code;

/// What one subscriber held: texts in arrival order, the (epoch, offset)
/// each came at, and the gaps reported.
#[derive(Default, Debug)]
pub(crate) struct Held {
    pub texts: Vec<String>,
    pub at: Vec<(String, u64)>,
    pub gaps: usize,
}

/// What the senders got.
#[derive(Default, Debug)]
pub(crate) struct Sent {
    pub acked: Vec<String>,
    pub refused: Vec<(String, Code, String)>,
    /// Per replica: its first acknowledged send after [`Load::mark`].
    pub first_after_mark: Vec<Option<Instant>>,
}

pub(crate) struct Load {
    pub held: Vec<Arc<Mutex<Held>>>,
    pub sent: Arc<Mutex<Sent>>,
    mark: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    senders: JoinSet<()>,
    subscribers: JoinSet<()>,
    addrs: Vec<SocketAddr>,
}

impl Load {
    /// A subscriber on each replica (subscribed before this returns), and
    /// `per_replica` senders through each.
    pub(crate) async fn start(replicas: &[&ServerProc], per_replica: usize) -> Self {
        let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.grpc_addr).collect();
        let mut subscribers = JoinSet::new();
        let mut held = Vec::new();
        for addr in &addrs {
            let h = Arc::new(Mutex::new(Held::default()));
            let (epoch, _, stream) = read(*addr, "messenger-offsets", "1").await;
            subscribers.spawn(subscribe(*addr, epoch, stream, Arc::clone(&h)));
            held.push(h);
        }
        let sent = Arc::new(Mutex::new(Sent {
            first_after_mark: vec![None; addrs.len()],
            ..Sent::default()
        }));
        let (mark, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let mut senders = JoinSet::new();
        for (r, addr) in addrs.iter().enumerate() {
            for s in 0..per_replica {
                let (sent, mark, stop) = (Arc::clone(&sent), Arc::clone(&mark), Arc::clone(&stop));
                senders.spawn(send_loop(*addr, r, format!("r{r}s{s}"), sent, mark, stop));
            }
        }
        Self {
            held,
            sent,
            mark,
            stop,
            senders,
            subscribers,
            addrs,
        }
    }

    /// Waits until `n` sends were acknowledged in all.
    pub(crate) async fn wait_acked(&self, n: usize) {
        let sent = Arc::clone(&self.sent);
        poll_until("sends acknowledged", Duration::from_secs(60), || {
            let sent = Arc::clone(&sent);
            async move { (sent.lock().unwrap().acked.len() >= n).then_some(()) }
        })
        .await;
    }

    /// From now on, each replica's first acknowledged send is recorded.
    pub(crate) fn mark(&self, at: Instant) {
        *self.mark.lock().unwrap() = Some(at);
        self.sent.lock().unwrap().first_after_mark.fill(None);
    }

    /// Waits until every replica acknowledged a send after the mark;
    /// returns the time from the mark to each.
    pub(crate) async fn wait_recovered(&self, limit: Duration) -> Vec<Duration> {
        let (sent, mark) = (Arc::clone(&self.sent), *self.mark.lock().unwrap());
        let mark = mark.expect("marked");
        let (took, _) = poll_until("every replica acknowledges a send again", limit, || {
            let sent = Arc::clone(&sent);
            async move {
                let firsts = sent.lock().unwrap().first_after_mark.clone();
                firsts
                    .into_iter()
                    .map(|f| f.map(|t| t - mark))
                    .collect::<Option<Vec<_>>>()
            }
        })
        .await;
        took
    }

    /// Stops the senders, sends one marker through each replica (retried
    /// until acknowledged) and waits until every subscriber holds every
    /// marker. Returns what was sent.
    pub(crate) async fn finish(mut self) -> (Sent, Vec<Held>) {
        self.stop.store(true, Ordering::Relaxed);
        while self.senders.join_next().await.is_some() {}
        let mut markers = Vec::new();
        for (r, addr) in self.addrs.iter().enumerate() {
            let text = format!("end-{r}");
            let grpc = connect(*addr).await;
            poll_until("a marker acknowledged", Duration::from_secs(30), || {
                let (mut grpc, text) = (grpc.clone(), text.clone());
                async move { grpc_send(&mut grpc, "end", &text).await.ok() }
            })
            .await;
            self.sent.lock().unwrap().acked.push(text.clone());
            markers.push(text);
        }
        for held in &self.held {
            let held = Arc::clone(held);
            let markers = markers.clone();
            poll_until("every marker held", Duration::from_secs(30), || {
                let held = Arc::clone(&held);
                let markers = markers.clone();
                async move {
                    let held = held.lock().unwrap();
                    markers.iter().all(|m| held.texts.contains(m)).then_some(())
                }
            })
            .await;
        }
        self.subscribers.abort_all();
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        let held = (self.held.iter())
            .map(|h| std::mem::take(&mut *h.lock().unwrap()))
            .collect();
        (sent, held)
    }
}

async fn send_loop(
    addr: SocketAddr,
    replica: usize,
    prefix: String,
    sent: Arc<Mutex<Sent>>,
    mark: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let mut grpc = connect(addr).await;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let text = format!("{prefix}-{i}");
        match grpc_send(&mut grpc, &prefix, &text).await {
            Ok(_) => {
                let now = Instant::now();
                let mut sent = sent.lock().unwrap();
                sent.acked.push(text);
                let first = &mut sent.first_after_mark[replica];
                if first.is_none() && mark.lock().unwrap().is_some_and(|m| now > m) {
                    *first = Some(now);
                }
            }
            Err(status) => {
                let entry = (text, status.code(), status.message().to_owned());
                sent.lock().unwrap().refused.push(entry);
                // Pacing only (sends are refused fast during a failover).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads until aborted; after a stream ends, resumes from its last
/// position: a new epoch is a gap, then the new epoch from its start.
async fn subscribe(
    addr: SocketAddr,
    mut epoch: String,
    mut stream: tonic::Streaming<messenger_proto::pb::ServerMessageResponse>,
    held: Arc<Mutex<Held>>,
) {
    let mut last = 0u64;
    loop {
        if let Ok(Some(m)) = stream.message().await {
            last = m.offset;
            let mut held = held.lock().unwrap();
            held.texts.push(m.text);
            held.at.push((epoch.clone(), m.offset));
            continue;
        }
        // Ended: resume where it stopped (retried while the replica is
        // between primaries).
        let since = format!("{epoch}:{last}");
        let (new_epoch, recovered, resumed) = loop {
            match try_read(addr, &since).await {
                Some(r) => break r,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        if recovered.as_deref() == Some("true") && new_epoch == epoch {
            stream = resumed;
            continue;
        }
        held.lock().unwrap().gaps += 1;
        epoch = new_epoch;
        last = 0;
        stream = loop {
            if let Some((_, _, s)) = try_read(addr, &format!("{epoch}:0")).await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
    }
}

type Read = (
    String,
    Option<String>,
    tonic::Streaming<messenger_proto::pb::ServerMessageResponse>,
);

async fn try_read(addr: SocketAddr, since: &str) -> Option<Read> {
    let mut client = connect(addr).await;
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("messenger-since", since.parse().ok()?);
    let response = client.read_messages(request).await.ok()?;
    let header = |k| (response.metadata().get(k)).map(|v| v.to_str().unwrap_or("").to_owned());
    let epoch = header("messenger-epoch")?;
    let recovered = header("messenger-recovered");
    Some((epoch, recovered, response.into_inner()))
}

/// Each acknowledged message's fate on one subscriber: (missing, duplicated).
pub(crate) fn check(acked: &[String], held: &Held) -> (Vec<String>, Vec<String>) {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    for t in &held.texts {
        *counts.entry(t).or_default() += 1;
    }
    let missing = (acked.iter())
        .filter(|t| !counts.contains_key(t.as_str()))
        .cloned()
        .collect();
    let duplicated = (counts.iter())
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| (*t).to_owned())
        .collect();
    (missing, duplicated)
}

/// The strict verdict (a planned switchover with `MIN_REPLICAS=1`): every
/// acknowledged message held by every subscriber exactly once, in one
/// order, and no gap reported. [`check`] alone allows gaps. Returns what is
/// wrong, nothing when all holds.
pub(crate) fn check_exact(acked: &[String], held: &[Held]) -> Vec<String> {
    let set: HashSet<&str> = acked.iter().map(String::as_str).collect();
    let mut wrong = Vec::new();
    let mut orders = Vec::new();
    for (i, held) in held.iter().enumerate() {
        let (missing, duplicated) = check(acked, held);
        let few = |v: &[String]| v[..v.len().min(5)].join(", ");
        if !missing.is_empty() {
            wrong.push(format!(
                "subscriber {i} lacks {}: {}",
                missing.len(),
                few(&missing)
            ));
        }
        if !duplicated.is_empty() {
            let n = duplicated.len();
            wrong.push(format!(
                "subscriber {i} duplicated {n}: {}",
                few(&duplicated)
            ));
        }
        if held.gaps > 0 {
            wrong.push(format!("subscriber {i} reported {} gaps", held.gaps));
        }
        orders.push(order_of(&set, held));
    }
    if orders.windows(2).any(|w| w[0] != w[1]) {
        wrong.push("the subscribers hold the acknowledged messages in different orders".into());
    }
    wrong
}

/// The acknowledged messages in the order `held` got them.
pub(crate) fn order_of<'a>(acked: &HashSet<&str>, held: &'a Held) -> Vec<&'a str> {
    (held.texts.iter().map(String::as_str))
        .filter(|t| acked.contains(t))
        .collect()
}
