//! The publish path: putting a message in the engine's order and history and
//! handing it to every subscriber's queue, under the hub's one lock. Messages
//! come from [`Hub::publish`] (sequenced here, in-process) or from
//! [`Hub::ingest`] (sequenced by a broker and read back by this replica's one
//! reader); both share [`enqueue`], so what subscribers see is identical.

use super::queue::PushError;
use super::{Disconnect, Hub, Inner, MessageTrace, PublishError, Published, Queued, ShuttingDown};
use crate::core::history::{Draft, Message};
use std::sync::Arc;

impl Hub {
    /// Puts the message in the engine's order and history and hands it to
    /// every subscriber's queue.
    pub fn publish(
        &self,
        author: String,
        text: String,
        trace: Option<Arc<dyn MessageTrace>>,
    ) -> Result<Published, PublishError> {
        let traceparent = trace.as_ref().and_then(|t| t.traceparent());
        let draft = Draft {
            author,
            text,
            traceparent,
        };
        let mut inner = self.inner.lock();
        if inner.shut_down {
            return Err(ShuttingDown.into());
        }
        let message = inner.engine.append(draft)?;
        Ok(self.enqueue(inner, message, trace))
    }

    /// Holds `message`, already sequenced by the broker, in history and
    /// hands it to every subscriber's queue. The caller (the one reader)
    /// hands messages over in the broker's order and calls [`Hub::restart`]
    /// first when one does not follow the newest held.
    pub fn ingest(
        &self,
        message: Message,
        trace: Option<Arc<dyn MessageTrace>>,
    ) -> Result<Published, ShuttingDown> {
        let mut inner = self.inner.lock();
        if inner.shut_down {
            return Err(ShuttingDown);
        }
        let message = inner.engine.hold(message);
        Ok(self.enqueue(inner, message, trace))
    }

    /// History could not continue (the broker lost its stream, or trimmed
    /// entries this replica had not read): history restarts in `epoch` after
    /// offset `newest`, and every subscription ends with
    /// [`Disconnect::HistoryLost`] once its queue is delivered, so clients
    /// resubscribe and learn of the gap. Returns how many were ended.
    pub fn restart(&self, epoch: String, newest: u64) -> usize {
        let mut inner = self.inner.lock();
        inner.engine.restart(epoch, newest);
        let subscribers = inner.subscribers.take();
        self.counted(&inner);
        drop(inner);
        for slot in &subscribers {
            slot.end(Disconnect::HistoryLost);
        }
        subscribers.len()
    }

    /// Hands `message` to every queue; a full queue disconnects its
    /// subscriber as slow. Releases the lock before waking the streams that
    /// were waiting and before logging.
    fn enqueue(
        &self,
        mut inner: parking_lot::MutexGuard<'_, Inner>,
        message: Arc<Message>,
        trace: Option<Arc<dyn MessageTrace>>,
    ) -> Published {
        let mut slow = Vec::new();
        let mut stale = Vec::new();
        let before = inner.subscribers.len();
        let mut wake = Vec::with_capacity(before);
        let capacity = self.queue_capacity;
        let records = trace.as_ref().is_some_and(|t| t.records());
        inner.subscribers.fan_out(|id, slot| {
            let queued = Queued {
                message: Arc::clone(&message),
                trace: trace
                    .as_ref()
                    .filter(|_| records || slot.info.wants_trace())
                    .cloned(),
            };
            match slot.push(queued, capacity) {
                Ok(waker) => {
                    wake.extend(waker);
                    true
                }
                Err(PushError::Full) => {
                    stale.push(slot.cut_slow());
                    slow.push(id);
                    false
                }
                // Not reached: a slot is ended only once it is out of the map.
                Err(PushError::Closed) => false,
            }
        });
        let delivered_to = inner.subscribers.len();
        // Their streams stay open until the peer or hyper drops them; they
        // count against the limit until then (see `Hub::remove`).
        inner.cut_open += slow.len();
        if delivered_to != before {
            self.counted(&inner);
        }
        let history = inner.engine.stats();
        drop(inner);
        // Outside the lock: a wake-up may reach the scheduler (and another
        // worker's futex), and other publishes wait on this lock.
        for waker in wake {
            waker.wake();
        }
        drop(stale);
        for id in &slow {
            tracing::warn!(
                subscriber = id,
                queue_capacity = self.queue_capacity,
                "subscriber fell behind; disconnecting it with RESOURCE_EXHAUSTED"
            );
        }
        Published {
            message,
            delivered_to,
            dropped_slow: slow.len(),
            history,
        }
    }
}
