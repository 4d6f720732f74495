//! When the stop request came: the start of the grace period that the
//! process's last steps (the final trace export) must also fit in.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Notes when a stop signal completed; clones share the note.
#[derive(Debug, Clone, Default)]
pub struct StopClock(Arc<OnceLock<Instant>>);

impl StopClock {
    /// `signal` (e.g. [`super::shutdown_signal`]), noting when it completes.
    pub fn watch(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let note = Arc::clone(&self.0);
        async move {
            signal.await;
            let _first = note.set(Instant::now());
        }
    }

    /// The end of a grace period of `grace` from the stop request; `None`
    /// when no stop was requested (the process ended on its own).
    pub fn deadline(&self, grace: Duration) -> Option<Instant> {
        self.0.get().map(|at| *at + grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_counts_from_the_signal() {
        let clock = StopClock::default();
        assert_eq!(clock.deadline(Duration::from_secs(1)), None);
        let before = Instant::now();
        clock.watch(async {}).await;
        let deadline = clock.deadline(Duration::from_secs(10)).unwrap();
        assert!(deadline >= before + Duration::from_secs(10));
        assert!(deadline <= Instant::now() + Duration::from_secs(10));
    }
}
