//! An in-test TCP proxy between a client and the server that can fault the
//! network the way real links fail:
//! - [`Proxy::stall_existing`]: every connection open now becomes a black hole
//!   in both directions: bytes are swallowed, nothing is forwarded, and no FIN
//!   or RST is ever sent (a peer that vanished, a dead NAT entry). Connections
//!   accepted later pass normally, so a reconnect heals.
//! - [`Proxy::stall_nth`]: the same for one connection (a replica's reader
//!   while its publishing connection still flows).
//! - [`Proxy::set_rate`]: a bandwidth cap per direction per connection (a slow
//!   link). Reads are throttled, so TCP backpressure reaches the sender.
//! - [`Proxy::cut`]: every connection open now is closed at once, and new
//!   ones are refused (accepted, then closed) until [`Proxy::restore`] (a
//!   link that went down and came back).
//!
//! Dropping the proxy aborts every task and closes every socket.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

/// 0 = unlimited.
type Rate = Arc<AtomicU64>;

pub struct Proxy {
    pub addr: SocketAddr,
    rate: Rate,
    refusing: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    accepted: watch::Receiver<usize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let rate: Rate = Arc::default();
        let refusing: Arc<AtomicBool> = Arc::default();
        let live: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let tasks: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (count, accepted) = watch::channel(0);
        let acceptor = tokio::spawn({
            let (rate, live, tasks) = (rate.clone(), live.clone(), tasks.clone());
            let refusing = refusing.clone();
            async move {
                while let Ok((downstream, _)) = listener.accept().await {
                    if refusing.load(Ordering::Acquire) {
                        continue; // dropping `downstream` closes it
                    }
                    let Ok(upstream) = TcpStream::connect(upstream).await else {
                        continue; // dropping `downstream` closes it, like a refused connect
                    };
                    let stalled = Arc::new(AtomicBool::new(false));
                    live.lock().await.push(stalled.clone());
                    let _ = downstream.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let (dr, dw) = downstream.into_split();
                    let (ur, uw) = upstream.into_split();
                    let mut tasks = tasks.lock().await;
                    tasks.spawn(pump(dr, uw, rate.clone(), stalled.clone()));
                    tasks.spawn(pump(ur, dw, rate.clone(), stalled));
                    count.send_modify(|n| *n += 1);
                }
            }
        });
        Self {
            addr,
            rate,
            refusing,
            live,
            accepted,
            tasks,
            acceptor,
        }
    }

    /// Turns every connection open now into a silent black hole.
    pub async fn stall_existing(&self) {
        for stalled in self.live.lock().await.drain(..) {
            stalled.store(true, Ordering::Release);
        }
    }

    /// Turns one connection into a silent black hole: the `nth` (0 first) of
    /// those open and not stalled yet, in the order they were accepted.
    pub async fn stall_nth(&self, nth: usize) {
        let mut live = self.live.lock().await;
        assert!(nth < live.len(), "only {} connections open", live.len());
        live.remove(nth).store(true, Ordering::Release);
    }

    /// Closes every connection open now and refuses new ones until [`Proxy::restore`].
    pub async fn cut(&self) {
        self.refusing.store(true, Ordering::Release);
        self.live.lock().await.clear();
        // Aborting the pumps drops both sockets of every connection: a close.
        self.tasks.lock().await.abort_all();
    }

    /// Accepts connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.refusing.store(false, Ordering::Release);
    }

    /// Caps each direction of each connection at `bytes_per_sec` (0: no cap).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::Release);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> watch::Receiver<usize> {
        self.accepted.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        if let Ok(mut tasks) = self.tasks.try_lock() {
            tasks.abort_all();
        }
    }
}

/// Copies `from` to `to`, throttled to the current rate; once `stalled` is
/// set, swallows everything and holds both sockets open forever.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rate: Rate,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let limit = rate.load(Ordering::Acquire);
        // Small reads under a cap, so the throttle is smooth.
        let chunk = if limit == 0 {
            buf.len()
        } else {
            (limit as usize / 20).clamp(1, buf.len())
        };
        let n = match from.read(&mut buf[..chunk]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.load(Ordering::Acquire) {
            break;
        }
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            // The other side is gone: pass the close on.
            return;
        }
    }
    if stalled.load(Ordering::Acquire) {
        // Black hole: keep reading and discarding, never write, never close.
        while from.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
}
