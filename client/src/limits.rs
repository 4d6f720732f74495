//! Overload protection for the HTTP API, answered as [`ApiError`] JSON.
//!
//! - [`with_deadline`] bounds every request, body reading included, so a slow
//!   upload or a stuck server call ends in 504, never a hang.
//! - [`with_shedding`] caps the requests in flight on the routes it wraps with
//!   one semaphore they share. A request that finds it full is refused at once
//!   (503 with `Retry-After`), not queued, so latency stays bounded under
//!   overload. The router applies it to the message routes only: health,
//!   readiness and metrics keep answering an overloaded client.

use crate::error::ApiError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder};

/// Wraps every route of `router` (and its fallbacks) in a `timeout` deadline.
pub fn with_deadline<S>(router: Router<S>, timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                to_response(e, timeout, 0)
            }))
            .layer(TimeoutLayer::new(timeout)),
    )
}

/// Lets at most `limit` requests to `router`'s routes run at once; sheds the rest.
pub fn with_shedding<S>(router: Router<S>, limit: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                to_response(e, Duration::ZERO, limit)
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(limit)),
    )
}

fn to_response(e: BoxError, timeout: Duration, limit: usize) -> Response {
    let error = if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::TimedOut(timeout)
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded { limit }
    } else {
        ApiError::Internal(e.to_string())
    };
    error.into_response()
}
