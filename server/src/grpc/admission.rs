//! Admission to the messenger service, decided from a call's headers before
//! its body is decoded.
//!
//! Owns three things, in this order:
//! - **Authentication**, when a tokens file is set ([`Auth`]): a call whose
//!   `authorization` is missing, repeated, malformed or unknown is refused
//!   with the refusal's status (UNAUTHENTICATED or PERMISSION_DENIED);
//!   otherwise its [`Principal`](crate::grpc::auth::Principal) goes into the
//!   request's extensions for the service.
//! - **In-flight tracking** for graceful shutdown: every call carries a
//!   [`TaskTrackerToken`] in its request extensions; `SendMessage` holds it
//!   until it has answered, so shutdown waits for calls already admitted.
//! - **Load shedding** of `SendMessage`: at most `max_concurrent_sends` calls
//!   are admitted at once. The next one is refused at once with
//!   [`ServiceError::Overloaded`], RESOURCE_EXHAUSTED, never queued, so
//!   overload cannot grow memory or latency without bound. `ReadMessages` is
//!   not limited here; the hub caps subscribers.
//!
//! Every refusal is counted like a call the service answered
//! (`grpc_server_started_total` and `grpc_server_handled_total` with its
//! code), by [`tally`](crate::grpc::tally) around this layer: an operator sees
//! refused credentials and shed sends next to every other outcome.
//!
//! [`TaskTrackerToken`]: tokio_util::task::task_tracker::TaskTrackerToken

use crate::grpc::auth::Auth;
use crate::grpc::error::ServiceError;
use crate::grpc::tally::SEND_PATH;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::NamedService;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Wraps the messenger service; see the module docs.
#[derive(Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    in_flight: TaskTracker,
    sends: Arc<Semaphore>,
    max_sends: usize,
    auth: Option<Auth>,
}

impl<S> Admission<S> {
    pub(crate) fn new(
        inner: S,
        in_flight: TaskTracker,
        max_sends: usize,
        auth: Option<Auth>,
    ) -> Self {
        Self {
            inner,
            in_flight,
            sends: Arc::new(Semaphore::new(max_sends)),
            max_sends,
            auth,
        }
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
        if let Some(auth) = &self.auth {
            match auth.authenticate(request.headers()) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(refusal) => {
                    let response = refusal.into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        let permit = if request.uri().path() == SEND_PATH {
            match Arc::clone(&self.sends).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::debug!(max = self.max_sends, "SendMessage shed");
                    let refusal = ServiceError::Overloaded {
                        max: self.max_sends,
                    };
                    let response = refusal.into_http();
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
