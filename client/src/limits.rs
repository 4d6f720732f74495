//! Overload protection for the HTTP API, answered as [`ApiError`] JSON.
//!
//! - [`DeadlineLayer`] bounds every request, body reading included, so a slow
//!   upload or a stuck server call ends in 504, never a hang.
//! - [`InFlight`] caps the requests in flight on the routes whose handlers
//!   take an [`Admitted`], with one semaphore they share. A request that finds
//!   it full is refused at once (503 with `Retry-After`), not queued, so
//!   latency stays bounded under overload. Only the message routes take it:
//!   health, readiness and metrics keep answering an overloaded client.
//!   [`Admitted`] is extracted before the body is read and held until the
//!   handler returns, as a tower concurrency limit around the route would
//!   be, without a layer (each layer is one more boxed route that every
//!   request clones).

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

/// Wraps routes in a [`Deadline`] of `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Answers 504 ([`ApiError::TimedOut`]) for a request not answered within
/// its timeout, counted from the call (body reading included). A plain tower
/// service with one allocation per request (its future), in the router's
/// outer layer stack: no `Router::layer` level and no error handler of its own.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let timeout = self.timeout;
        let response = tokio::time::timeout(timeout, self.inner.call(request));
        Box::pin(async move {
            Ok(match response.await {
                Ok(Ok(response)) => response,
                Err(_elapsed) => ApiError::TimedOut(timeout).into_response(),
            })
        })
    }
}

/// The cap on message-route requests in flight, shared by every route
/// that takes an [`Admitted`].
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// One admitted request: its slot is free again once this is dropped (when
/// the handler returns).
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl<S> FromRequestParts<S> for Admitted
where
    InFlight: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let in_flight = InFlight::from_ref(state);
        in_flight
            .permits
            .try_acquire_owned()
            .map(|permit| Self { _permit: permit })
            .map_err(|_| ApiError::Overloaded {
                limit: in_flight.limit,
            })
    }
}
