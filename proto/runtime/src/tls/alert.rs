//! A server's refusal of our client certificate, caught while connecting.
//!
//! Why: in TLS 1.3 the client's handshake is over once it sends its
//! Finished; the server checks the client's certificate after that (RFC 8446
//! §4.4.2.4) and refuses it with an alert (`unknown_ca`, `bad_certificate`,
//! `certificate_required`) that arrives on the connection's first read. Left
//! to hyper and h2, that read happens after the request was written: the
//! alert's type is lost (h2 keeps an I/O error as its text, hyper reports a
//! waiting request as "operation was canceled: connection closed"), or the
//! alert itself is (the server closes with our request unread, so its kernel
//! sends a reset that discards it). Either way the client could not say why.
//!
//! How: each connection gets its own view of the client config whose
//! certificate resolver notes that the server asked for a certificate
//! ([`asking`]). Only then, the connector waits for the server's first
//! bytes (every HTTP/2 server opens with a SETTINGS frame, RFC 9113 §3.4)
//! before handing the connection over: a refusal surfaces as a typed
//! handshake error, acceptance as those bytes, replayed first by
//! [`Prefixed`].
//!
//! Invariants:
//! - Nothing changes for a server that does not ask for a certificate.
//! - The wait is bounded by [`ACCEPTANCE_WAIT`]; a server that says nothing
//!   until spoken to gets the connection as before, nothing is lost.
//! - Bytes read while waiting reach the caller first, in order.

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Longest wait for the first bytes of a server that asked for our
/// certificate. Its SETTINGS follow its check of our certificate at once;
/// past this bound the connection is handed over unread (a server that
/// waits for our preface, or one too busy to answer sooner).
pub(crate) const ACCEPTANCE_WAIT: Duration = Duration::from_secs(1);

/// Bytes read for the wait: one read, whatever arrived.
const FIRST_READ_BYTES: usize = 4096;

/// A per-connection copy of `config` (cheap: its parts are shared) whose
/// certificate resolver sets the returned flag when the server asks for a
/// client certificate.
pub(crate) fn asking(config: &Arc<ClientConfig>) -> (Arc<ClientConfig>, Arc<AtomicBool>) {
    let asked = Arc::new(AtomicBool::new(false));
    let mut config = ClientConfig::clone(config);
    config.client_auth_cert_resolver = Arc::new(NotesRequest {
        inner: Arc::clone(&config.client_auth_cert_resolver),
        asked: Arc::clone(&asked),
    });
    (Arc::new(config), asked)
}

/// The server's first bytes, or its refusal; `Ok(empty)` when it said
/// nothing within [`ACCEPTANCE_WAIT`] or closed.
pub(crate) async fn first_bytes<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; FIRST_READ_BYTES];
    match tokio::time::timeout(ACCEPTANCE_WAIT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(buf)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Vec::new()),
    }
}

#[derive(Debug)]
struct NotesRequest {
    inner: Arc<dyn ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for NotesRequest {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// A stream that yields `prefix` before the rest of `inner`.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            read: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read < self.prefix.len() {
            let rest = &self.prefix[self.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.read += n;
            if self.read == self.prefix.len() {
                self.prefix = Vec::new();
                self.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap();
        drop(near);
        let mut stream = Prefixed::new(b"hello".to_vec(), far);
        let mut small = [0u8; 3];
        let n = stream.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"hel");
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }
}
