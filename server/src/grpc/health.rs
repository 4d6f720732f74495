//! `grpc.health.v1.Health`, answered as `health.proto` specifies. Built on
//! tonic-health's generated protos (`tonic_health::pb`), replacing its server,
//! whose `Watch` (0.14) fails an unknown service with NOT_FOUND instead of
//! keeping the call open, never reports a service that becomes known later to
//! an earlier watcher, and repeats a status that did not change.
//!
//! From `health.proto`, case by case:
//! - `Check` of a known service answers its status; of an unknown one, the
//!   call fails with NOT_FOUND. The empty name is the server as a whole.
//! - `Watch` sends the current status at once, then one message each time
//!   it changes (never the same status twice in a row). An unknown service
//!   gets `SERVICE_UNKNOWN` and the call stays open; when the service becomes
//!   known later, the watcher gets its status.
//!
//! [`HealthReporter`] keeps tonic-health's method names, so callers set
//! statuses the same way.

use crate::grpc::error::ServiceError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

type Statuses = Arc<Mutex<HashMap<String, watch::Sender<Wire>>>>;

/// Sets the statuses the health service reports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    statuses: Statuses,
}

/// The health service; serve it with [`HealthServer`].
#[derive(Debug, Clone)]
pub struct HealthService {
    statuses: Statuses,
}

/// A reporter and the service it feeds. The server as a whole (`""`) starts
/// SERVING, as in tonic-health and grpc-go.
pub fn health_reporter() -> (HealthReporter, HealthServer<HealthService>) {
    let statuses: Statuses = Arc::default();
    let reporter = HealthReporter {
        statuses: Arc::clone(&statuses),
    };
    reporter.set(String::new(), Wire::Serving);
    (reporter, HealthServer::new(HealthService { statuses }))
}

impl HealthReporter {
    /// Marks the service `S` SERVING.
    pub async fn set_serving<S: NamedService>(&self) {
        self.set(S::NAME.to_owned(), Wire::Serving);
    }

    /// Marks the service `S` NOT_SERVING.
    pub async fn set_not_serving<S: NamedService>(&self) {
        self.set(S::NAME.to_owned(), Wire::NotServing);
    }

    /// Sets `service`'s status; watchers get it if it differs from the last.
    pub async fn set_service_status(
        &self,
        service: impl AsRef<str>,
        status: tonic_health::ServingStatus,
    ) {
        self.set(service.as_ref().to_owned(), Wire::from(status));
    }

    /// Mirrors `up` into `service`'s status: SERVING while `true`,
    /// NOT_SERVING while `false` (the broker's reachability into the
    /// messenger service's). Runs until aborted or the sender is dropped.
    pub async fn follow(self, service: &'static str, mut up: watch::Receiver<bool>) {
        loop {
            let status = if *up.borrow_and_update() {
                Wire::Serving
            } else {
                Wire::NotServing
            };
            self.set(service.to_owned(), status);
            if up.changed().await.is_err() {
                return;
            }
        }
    }

    fn set(&self, service: String, status: Wire) {
        let mut statuses = self.statuses.lock();
        statuses
            .entry(service)
            .or_insert_with(|| watch::channel(Wire::ServiceUnknown).0)
            .send_if_modified(|current| std::mem::replace(current, status) != status);
    }
}

impl HealthService {
    /// A receiver of `service`'s status, registering the name (as
    /// SERVICE_UNKNOWN) when it is not known yet.
    fn subscribe(&self, service: &str) -> watch::Receiver<Wire> {
        let mut statuses = self.statuses.lock();
        statuses
            .entry(service.to_owned())
            .or_insert_with(|| watch::channel(Wire::ServiceUnknown).0)
            .subscribe()
    }
}

/// A `Watch` call's updates. Dropping it forgets a name that never became
/// known once no other call watches it, so watches of random names cannot
/// grow the table.
pub struct WatchStream {
    updates: tokio_stream::wrappers::WatchStream<Wire>,
    statuses: Statuses,
    service: String,
}

impl Stream for WatchStream {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        Pin::new(&mut self.updates).poll_next(cx).map(|status| {
            status.map(|status| {
                Ok(HealthCheckResponse {
                    status: status as i32,
                })
            })
        })
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut statuses = self.statuses.lock();
        // `updates` is still alive here: a count of 1 is this call alone.
        let unused = statuses
            .get(&self.service)
            .is_some_and(|tx| *tx.borrow() == Wire::ServiceUnknown && tx.receiver_count() <= 1);
        if unused {
            statuses.remove(&self.service);
        }
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        let status = self
            .statuses
            .lock()
            .get(service)
            .map(|tx| *tx.borrow())
            .filter(|s| *s != Wire::ServiceUnknown);
        match status {
            Some(status) => Ok(Response::new(HealthCheckResponse {
                status: status as i32,
            })),
            None => Err(ServiceError::UnknownHealthService {
                service: service.clone(),
            }
            .into()),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        Ok(Response::new(WatchStream {
            updates: tokio_stream::wrappers::WatchStream::new(self.subscribe(&service)),
            statuses: Arc::clone(&self.statuses),
            service,
        }))
    }
}
