//! The core: the chat itself.
//!
//! - [`publish`]: the one seam `SendMessage` sends through (sequencing here,
//!   or the broker: chosen once, at bind).
//! - [`fanout`]: the hub with the one place that records what came of a
//!   publish into it; the broker's one way into the hub (`Fanout::ingest`).
//! - [`hub`]: the fan-out core (total order, bounded queues, resume without
//!   a seam, the slow-subscriber policy); its `//!` states the invariants.
//! - [`history`]: where an accepted message gets its place in the one order
//!   (offset, epoch, `sendTime`) and how long it is kept; its in-process
//!   implementation with bounded history.
//! - [`broker`]: the Redis Streams engine (`MESSENGER_BROKER_URL`): replicas
//!   share one chat.
//! - [`resume`]: the resume protocol's request metadata and response headers.

pub mod broker;
pub(crate) mod fanout;
pub(crate) mod history;
pub mod hub;
pub(crate) mod publish;
pub(crate) mod resume;
