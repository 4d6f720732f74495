//! A TCP proxy on 127.0.0.1 whose links `soak-faults` can cut: a
//! messenger-client talks to its server replica through one, and
//! [`Proxy::cut`] resets every connection open through it at once (RST, as a
//! dropped link looks to both ends), while new connections go through again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    /// Cancelled to cut the connections open now; replaced by a fresh one.
    links: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free port and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("proxy bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("proxy addr: {e}"))?;
        let links = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, upstream, links.clone(), stop.clone()));
        Ok(Self { addr, links, stop })
    }

    /// Resets every connection open through the proxy now.
    pub(crate) fn cut(&self) {
        let mut links = self.links.lock().expect("never poisoned");
        links.cancel();
        *links = CancellationToken::new();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    links: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((down, _)) = accepted else { continue };
        let cut = links.lock().expect("never poisoned").clone();
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return; // upstream down (a replica restarting): the caller retries
            };
            let (mut down, mut up) = (down, up);
            let _nodelay = (down.set_nodelay(true), up.set_nodelay(true));
            tokio::select! {
                () = cut.cancelled() => {
                    // Linger 0: close sends RST, a cut rather than a goodbye.
                    let _rst = (down.set_zero_linger(), up.set_zero_linger());
                }
                _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
            }
        });
    }
}
