//! Admission to the messenger service, decided from a call's headers before
//! its body is decoded.
//!
//! Owns two things:
//! - **In-flight tracking** for graceful shutdown: every call carries a
//!   [`TaskTrackerToken`] in its request extensions; `SendMessage` holds it
//!   until it has answered, so shutdown waits for calls already admitted.
//! - **Load shedding** of `SendMessage`: at most `max_concurrent_sends` calls
//!   are admitted at once. The next one is refused at once with
//!   [`ServiceError::Overloaded`], RESOURCE_EXHAUSTED (counted in
//!   `grpc_server_handled_total`), never queued, so overload cannot grow
//!   memory or latency without bound. `ReadMessages` is not
//!   limited here; the hub caps subscribers.

use crate::grpc::error::ServiceError;
use crate::ops::metrics::Metrics;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::NamedService;

/// The gRPC path of the limited method.
const SEND_PATH: &str = "/mes_grpc.MessengerServer/SendMessage";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Wraps the messenger service; see the module docs.
#[derive(Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    in_flight: TaskTracker,
    sends: Arc<Semaphore>,
    max_sends: usize,
    metrics: Arc<Metrics>,
}

impl<S> Admission<S> {
    pub(crate) fn new(
        inner: S,
        in_flight: TaskTracker,
        max_sends: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            in_flight,
            sends: Arc::new(Semaphore::new(max_sends)),
            max_sends,
            metrics,
        }
    }

    fn shed(&self) -> http::Response<Body> {
        let refusal = ServiceError::Overloaded {
            max: self.max_sends,
        };
        let rpc = &self.metrics.send;
        rpc.started.increment(1);
        rpc.handled(refusal.code());
        tracing::debug!(max = self.max_sends, "SendMessage shed");
        refusal.into_http()
    }
}

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let permit = if request.uri().path() == SEND_PATH {
            match Arc::clone(&self.sends).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let response = self.shed();
                    return Box::pin(async move { Ok(response) });
                }
            }
        } else {
            None
        };
        request.extensions_mut().insert(self.in_flight.token());
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
}
