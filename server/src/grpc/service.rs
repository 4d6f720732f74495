//! `mes_grpc.MessengerServer`: maps proto requests to the core and hub
//! messages back to proto, with per-call metrics and spans. Validation lives
//! here; a send goes through the one [`Publisher`] the app chose at bind
//! (sequenced in this process, or by the broker), subscriptions to the
//! [`Hub`].
//!
//! A `ReadMessages` response is a [`MessageStream`] ([`stream`]).

use crate::core::hub::{Hub, Resume, SubscribeRequest};
use crate::core::publish::Publisher;
use crate::core::resume::{ReadOptions, set_headers};
use crate::grpc::auth::Principal;
use crate::grpc::error::ServiceError;
use crate::grpc::status_spec::CallDeadline;
use crate::grpc::tally::Claim;
use crate::ops::metrics::{Metrics, RpcMetrics};
use messenger_proto::limits::Limits;
use messenger_proto::pb::messenger_server_server::MessengerServer;
use messenger_proto::pb::{SendMessageRequest, TimeResponse};
use messenger_proto::time::to_timestamp;
use messenger_runtime::telemetry::{ServerSpan, extract_metadata};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tonic::{Code, Request, Response, Status};

mod stream;
pub(crate) use stream::MessageStream;

pub(crate) struct MessengerService {
    hub: Arc<Hub>,
    /// Where sends go: chosen once, at bind.
    publisher: Arc<dyn Publisher>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl MessengerService {
    pub(crate) fn new(
        hub: Arc<Hub>,
        publisher: Arc<dyn Publisher>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            hub,
            publisher,
            limits,
            metrics,
        }
    }

    async fn accept(
        &self,
        req: SendMessageRequest,
        principal: Option<Principal>,
    ) -> Result<TimeResponse, ServiceError> {
        self.limits.check(&req)?;
        if principal.is_some_and(|p| !p.may_post_as(&req.author)) {
            return Err(ServiceError::NotTokenAuthor);
        }
        let send_time = self.publisher.publish(req.author, req.text).await?;
        self.metrics.accepted.increment(1);
        Ok(TimeResponse {
            send_time: Some(to_timestamp(send_time)),
        })
    }
}

/// The SERVER span of one `SendMessage`, continuing the caller's trace from
/// metadata (parsed strictly; anything invalid starts a new trace). Sampled
/// before anything else is built; unsampled, or without export, the call
/// still runs in a context that carries the caller's trace on.
fn send_span<T>(request: &Request<T>) -> ServerSpan {
    messenger_runtime::rpc_server_span!("SendMessage", extract_metadata(request.metadata()))
}

/// The caller's deadline, when it sent `grpc-timeout` ([`CallDeadline`]).
fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    let deadline = request.extensions().get::<CallDeadline>()?;
    Some(deadline.0.into_std())
}

/// A `SendMessage` handler dropped before it answered (a broker slower than
/// the caller's deadline, or a caller that reset the stream) is still
/// counted as handled: `DeadlineExceeded` at or past its deadline, else
/// `Canceled`, as the caller saw it. Forgotten once the handler answers.
struct Unfinished<'a> {
    rpc: &'a RpcMetrics,
    started: Instant,
    deadline: Option<Instant>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let code = match self.deadline {
            Some(at) if Instant::now() >= at => Code::DeadlineExceeded,
            _ => Code::Cancelled,
        };
        self.rpc.handled(code);
        self.rpc
            .handling
            .record(self.started.elapsed().as_secs_f64());
    }
}

#[tonic::async_trait]
impl MessengerServer for MessengerService {
    async fn send_message(
        &self,
        mut request: Request<SendMessageRequest>,
    ) -> Result<Response<TimeResponse>, Status> {
        // Put there by `Admission` before the body was decoded; held
        // until the reply, so shutdown waits for this call.
        let _in_flight = request.extensions_mut().remove::<TaskTrackerToken>();
        // Put there by `Admission` too when token auth is on.
        let principal = request.extensions_mut().remove::<Principal>();
        let rpc = &self.metrics.send;
        // Counted here from now on, not by the call's tally (`grpc::tally`).
        Claim::take(request.extensions());
        rpc.started.increment(1);
        rpc.msg_received.increment(1);
        let started = Instant::now();
        let unfinished = Unfinished {
            rpc,
            started,
            deadline: deadline_of(&request),
        };
        let mut span = send_span(&request);
        let result = span.run(self.accept(request.into_inner(), principal)).await;
        std::mem::forget(unfinished);
        let code = result
            .as_ref()
            .map_or_else(ServiceError::code, |_| Code::Ok);
        span.finish(code);
        rpc.handled(code);
        rpc.handling.record(started.elapsed().as_secs_f64());
        if code == Code::Ok {
            rpc.msg_sent.increment(1);
        }
        result.map(Response::new).map_err(Into::into)
    }

    type ReadMessagesStream = MessageStream;

    async fn read_messages(
        &self,
        mut request: Request<()>,
    ) -> Result<Response<Self::ReadMessagesStream>, Status> {
        let principal = request.extensions_mut().remove::<Principal>();
        let rpc = &self.metrics.read;
        Claim::take(request.extensions());
        rpc.started.increment(1);
        let started = Instant::now();
        rpc.msg_received.increment(1);
        // A broker replica before its first load has only a placeholder
        // epoch: a stream opened now would end "history lost" when the
        // broker comes, reporting a gap where nothing was missed.
        let ready = self.publisher.ready().map_err(ServiceError::from);
        let subscribed = ready
            .and_then(|()| Ok(ReadOptions::from_metadata(request.metadata())?))
            .and_then(|options| {
                let subscription = self.hub.subscribe_with(SubscribeRequest {
                    since: options.since.clone(),
                    peer: request.remote_addr(),
                    wants_trace: options.wants_trace,
                })?;
                Ok((options, subscription))
            });
        let (options, subscription) = match subscribed {
            Ok(s) => s,
            Err(e) => {
                rpc.handled(e.code());
                rpc.handling.record(started.elapsed().as_secs_f64());
                return Err(e.into());
            }
        };
        let resume = subscription.resume();
        match resume {
            Resume::NotAsked => {}
            Resume::Recovered { .. } => self.metrics.resumes_recovered.increment(1),
            Resume::Gap(gap) => {
                self.metrics.resumes_gap.increment(1);
                tracing::info!(
                    subscriber = subscription.id(),
                    ?gap,
                    "resume not recovered; starting live"
                );
            }
        }
        let mut headers = tonic::metadata::MetadataMap::new();
        set_headers(&mut headers, &options, &subscription);
        let deadline = deadline_of(&request);
        let mut response = Response::new(MessageStream::new(
            subscription,
            self.hub.queue_capacity(),
            Arc::clone(&self.metrics),
            &options,
            principal,
            deadline,
        ));
        *response.metadata_mut() = headers;
        Ok(response)
    }
}
