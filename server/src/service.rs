//! `mes_grpc.MessengerServer`: maps proto requests to the [`Hub`] and hub
//! messages back to proto. Validation lives here; ordering lives in the hub.

use crate::error::ServiceError;
use crate::hub::{Hub, Message, Subscription};
use messenger_proto::pb::messenger_server_server::MessengerServer;
use messenger_proto::pb::{SendMessageRequest, ServerMessageResponse, TimeResponse};
use messenger_proto::time::to_timestamp;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio_stream::Stream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

/// Field size limits enforced on `SendMessage`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_author_bytes: usize,
}

pub struct MessengerService {
    hub: Arc<Hub>,
    limits: Limits,
    /// Counts `SendMessage` calls in progress, so shutdown can let them finish
    /// before it ends the streams.
    in_flight: TaskTracker,
}

impl MessengerService {
    pub fn new(hub: Arc<Hub>, limits: Limits, in_flight: TaskTracker) -> Self {
        Self {
            hub,
            limits,
            in_flight,
        }
    }
}

fn check_len(
    field: &'static str,
    value: &str,
    max: usize,
    env: &'static str,
) -> Result<(), ServiceError> {
    if value.len() > max {
        return Err(ServiceError::FieldTooLong {
            field,
            len: value.len(),
            max,
            env,
        });
    }
    Ok(())
}

impl Limits {
    fn check(&self, req: &SendMessageRequest) -> Result<(), ServiceError> {
        use crate::config::{ENV_MAX_AUTHOR_BYTES, ENV_MAX_TEXT_BYTES};
        check_len(
            "author",
            &req.author,
            self.max_author_bytes,
            ENV_MAX_AUTHOR_BYTES,
        )?;
        check_len("text", &req.text, self.max_text_bytes, ENV_MAX_TEXT_BYTES)
    }
}

#[tonic::async_trait]
impl MessengerServer for MessengerService {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<TimeResponse>, Status> {
        let _in_flight = self.in_flight.token();
        let req = request.into_inner();
        self.limits.check(&req)?;
        let published = self
            .hub
            .publish(req.author, req.text)
            .map_err(ServiceError::from)?;
        let send_time = Some(to_timestamp(published.message.send_time));
        Ok(Response::new(TimeResponse { send_time }))
    }

    type ReadMessagesStream = MessageStream;

    async fn read_messages(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::ReadMessagesStream>, Status> {
        let subscription = self.hub.subscribe().map_err(ServiceError::from)?;
        let capacity = self.hub.queue_capacity();
        Ok(Response::new(MessageStream {
            subscription,
            capacity,
            done: false,
        }))
    }
}

/// The response stream of one `ReadMessages` call. Dropping it (the RPC was
/// cancelled or the connection died) unsubscribes at once.
pub struct MessageStream {
    subscription: Subscription,
    capacity: usize,
    done: bool,
}

fn to_proto(m: &Message) -> ServerMessageResponse {
    ServerMessageResponse {
        author: m.author.clone(),
        text: m.text.clone(),
        send_time: Some(to_timestamp(m.send_time)),
    }
}

impl Stream for MessageStream {
    type Item = Result<ServerMessageResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.subscription.poll_recv(cx)) {
            Ok(message) => Poll::Ready(Some(Ok(to_proto(&message)))),
            Err(disconnect) => {
                self.done = true;
                let error = ServiceError::from_disconnect(disconnect, self.capacity);
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }
}
