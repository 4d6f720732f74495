//! The connection tasks of one accept loop, and the end of the loop's grace
//! period.
//!
//! Invariants:
//! - An accept loop owns its connections' tasks ([`Connections`]): it
//!   returns only once every one of them has ended, and everything a
//!   connection holds (its streams, their queues, the trace of a message
//!   still queued) has been dropped by then.
//! - Past the grace period ([`finish_by`]) the loop is abandoned: its
//!   connections are aborted, and the loop returns once they are dropped,
//!   within [`ABANDON_BOUND`]. Before this, an aborted loop left its
//!   connection tasks running until the runtime itself was dropped, after
//!   the process's last steps (the final trace export among them).

use super::Hygiene;
use std::future::Future;
use std::time::Duration;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

/// How long an abandoned loop has to drop its aborted connections before
/// its own task is aborted.
pub const ABANDON_BOUND: Duration = Duration::from_secs(1);

/// The connection tasks of one accept loop.
#[derive(Default)]
pub(super) struct Connections {
    tasks: JoinSet<()>,
}

impl Connections {
    pub(super) fn spawn(&mut self, connection: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(connection);
    }

    /// Completes when some connection has ended (never, while there is
    /// none); the accept loop polls it to reap them as they go.
    pub(super) async fn reap(&mut self) {
        if self.tasks.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until every connection has ended; once `hygiene` is abandoned,
    /// aborts those left and waits until they are dropped.
    pub(super) async fn wait(mut self, hygiene: &Hygiene) {
        let abandoned = hygiene.abandoned();
        tokio::pin!(abandoned);
        let mut aborted = false;
        loop {
            tokio::select! {
                biased;
                () = &mut abandoned, if !aborted => {
                    aborted = true;
                    self.tasks.abort_all();
                }
                ended = self.tasks.join_next() => if ended.is_none() { return },
            }
        }
    }
}

/// Waits for `serve`, the accept loop of `hygiene` (already shut down),
/// until `deadline`: `Some` with its result if it ended by then. Past it,
/// abandons the connections still open and waits for the loop to drop them
/// (at most [`ABANDON_BOUND`], then its task is aborted): `None`.
pub async fn finish_by(
    serve: &mut JoinHandle<()>,
    hygiene: &Hygiene,
    deadline: Instant,
) -> Option<Result<(), JoinError>> {
    if let Ok(result) = timeout_at(deadline, &mut *serve).await {
        return Some(result);
    }
    hygiene.abandon();
    if timeout(ABANDON_BOUND, &mut *serve).await.is_err() {
        serve.abort();
    }
    None
}
