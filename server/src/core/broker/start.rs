//! Starting a replica's engine ([`RedisEngine::start`]): the publishing
//! thread, the refusal and Sentinel watchers, and the reader, then a bounded
//! wait for the reader's first load. Invariant: started once; a second start
//! keeps the first hub.

use super::{RedisEngine, commit, reader, refusal, sentinel};
use crate::app::config::ENV_BROKER_URL;
use crate::core::fanout::Fanout;
use std::sync::Arc;

impl RedisEngine {
    /// Starts this replica's reader and waits (up to the broker timeout) for
    /// its first load of the stream's tail, so a restarted replica serves
    /// resumes from its first request. A broker that is down is logged and
    /// left to the reader's retries.
    pub(crate) async fn start(
        self: &Arc<Self>,
        fanout: Arc<Fanout>,
    ) -> tokio::task::JoinHandle<()> {
        let mut up = self.watch_up();
        if self.local.set(Arc::clone(&fanout)).is_err() {
            tracing::warn!(broker = %self.name, "broker engine started twice; keeping the first hub");
        }
        if let Some(queued) = self.queued.lock().take() {
            let publishing = commit::start(Arc::downgrade(self), queued);
            let watch = refusal::watch(Arc::downgrade(self));
            let follow = sentinel::watch(Arc::downgrade(self));
            match &publishing {
                Some(runtime) => drop((runtime.spawn(watch), runtime.spawn(follow))),
                None => drop((tokio::spawn(watch), tokio::spawn(follow))),
            }
            if let Some(runtime) = publishing {
                let _ = self.publishing.set(runtime);
            }
        }
        let task = tokio::spawn(reader::run(Arc::clone(self), fanout));
        if tokio::time::timeout(self.timeout, up.wait_for(|up| *up))
            .await
            .is_err()
        {
            tracing::warn!(
                broker = %self.name,
                env = ENV_BROKER_URL,
                "broker not reachable at start; serving with health NOT_SERVING until it is"
            );
        }
        task
    }
}
