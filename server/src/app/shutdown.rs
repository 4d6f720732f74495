//! The ordered drain of a serving [`App`](crate::App), within one grace period.
//!
//! Order, each step starting when the one before has finished (or the grace
//! period ran out):
//! 1. health goes NOT_SERVING (overall and for the messenger service), so
//!    balancers and probes stop sending new work (with the Redis engine, the
//!    task mirroring the broker's reachability into health stops first);
//! 2. the gRPC listener stops accepting, open connections get GOAWAY, and
//!    those with nothing in flight (idle, half-open, never handshaked) are
//!    closed at once ([`messenger_runtime::conn`]);
//! 3. `SendMessage` calls already admitted finish ([`Shutdown::in_flight`]
//!    holds one token per call, from its headers on);
//! 4. the hub ends every `ReadMessages` stream with UNAVAILABLE, after the
//!    stream's queue has been delivered;
//! 5. the serve loop gets what is left of the grace period to close its
//!    connections; past it they are aborted, and the drain ends once they
//!    are dropped (with them every queue, and the trace of every message
//!    still queued, so its `fanout` span ends before the final export).
//!
//! Invariants: the whole drain takes at most the grace period plus
//! [`conn::ABANDON_BOUND`] to drop what was left; every step runs even if an earlier one timed out;
//! the `/metrics` endpoint ([`Shutdown::metrics_hygiene`]) shuts down once
//! the drain is over, whatever its outcome, or when the app is dropped
//! unserved. A new step is one more field here and one more call in
//! [`Shutdown::drain`].

use crate::core::hub::Hub;
use crate::grpc::health::HealthReporter;
use messenger_proto::SERVICE_NAME;
use messenger_runtime::conn::{self, Hygiene};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tonic_health::ServingStatus;

/// What the serve task returns.
/// What the serve task returns: it serves until its connections close.
pub(crate) type Served = ();

/// The drain's handles on the parts of a serving app; built by `App::bind`.
pub(crate) struct Shutdown {
    health: HealthReporter,
    /// The gRPC port's connections: its shutdown stops accepting (step 2).
    grpc: Hygiene,
    in_flight: TaskTracker,
    hub: Arc<Hub>,
    grace: Duration,
    /// The metrics port's connections: shut down when this is dropped, after
    /// the drain or with an unserved app.
    metrics: Hygiene,
    /// With the Redis engine: the task that mirrors the broker's reachability
    /// into health; stopped first, so it cannot turn SERVING back on.
    broker_health: Option<AbortOnDropHandle<()>>,
}

impl Shutdown {
    /// `(grpc, metrics)`: the hygiene of the gRPC port and of the metrics port.
    pub(crate) fn new(
        health: HealthReporter,
        hub: Arc<Hub>,
        grace: Duration,
        (grpc, metrics): (Hygiene, Hygiene),
    ) -> Self {
        Self {
            health,
            grpc,
            in_flight: TaskTracker::new(),
            hub,
            grace,
            metrics,
            broker_health: None,
        }
    }

    /// Stops `task` (the broker health reporter) at the start of the drain.
    pub(crate) fn stop_on_drain(&mut self, task: AbortOnDropHandle<()>) {
        self.broker_health = Some(task);
    }

    /// The tracker that admission hands each call's token from (step 3).
    pub(crate) fn in_flight(&self) -> TaskTracker {
        self.in_flight.clone()
    }

    /// The metrics port's hygiene; it shuts down once the drain is over.
    pub(crate) fn metrics_hygiene(&self) -> Hygiene {
        self.metrics.clone()
    }

    /// Runs steps 1 to 5 against the serve task; see the module docs.
    pub(crate) async fn drain(self, mut server: JoinHandle<Served>) -> Served {
        let deadline = Instant::now() + self.grace;
        if let Some(task) = &self.broker_health {
            task.abort();
        }
        self.set_not_serving().await;
        // Stops accepting (every connection gets GOAWAY, conn::serve_grpc)
        // and closes idle connections.
        self.grpc.shutdown();
        self.finish_in_flight(deadline).await;
        self.hub.shutdown();
        self.close_connections(&mut server, deadline).await
    }

    async fn set_not_serving(&self) {
        for service in ["", SERVICE_NAME] {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        tracing::info!("health set to NOT_SERVING");
    }

    async fn finish_in_flight(&self, deadline: Instant) {
        self.in_flight.close();
        if timeout_at(deadline, self.in_flight.wait()).await.is_err() {
            tracing::warn!("grace period ended with SendMessage calls still in flight");
        }
    }

    async fn close_connections(
        &self,
        server: &mut JoinHandle<Served>,
        deadline: Instant,
    ) -> Served {
        if let Some(result) = conn::finish_by(server, &self.grpc, deadline).await {
            return joined(result);
        }
        tracing::warn!(
            grace_secs = self.grace.as_secs(),
            "grace period ended; closed the remaining connections"
        );
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.metrics.shutdown();
    }
}

/// The serve task's result; a cancelled task served until aborted, a
/// panicked one re-raises its panic.
pub(crate) fn joined(result: Result<Served, tokio::task::JoinError>) -> Served {
    match result {
        Ok(served) => served,
        Err(e) if e.is_cancelled() => {}
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
