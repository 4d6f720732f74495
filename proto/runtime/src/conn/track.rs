//! [`Track`]: counts each request as in flight on its connection, from its
//! head until its response body has ended (or the call was dropped).

use super::activity::{ConnHandle, RequestGuard};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Service;

/// Counts every request of one connection (see the module docs): built by
/// the serve loops for each accepted connection ([`Track::for_connection`]).
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    conn: ConnHandle,
}

impl<S> Track<S> {
    /// Counts every request on `conn`.
    pub fn for_connection(inner: S, conn: ConnHandle) -> Self {
        Self { inner, conn }
    }
}

impl<S, B, RB> Service<http::Request<B>> for Track<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let guard = Some(self.conn.begin());
        // tonic's `Request::remote_addr` reads this.
        if let Some(remote) = self.conn.remote_addr() {
            request
                .extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: Some(remote),
                });
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody { inner, guard }))
        })
    }
}

/// A response body that keeps its request counted until it ends or is dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    guard: Option<RequestGuard>,
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.guard = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
