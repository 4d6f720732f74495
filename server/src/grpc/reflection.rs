//! gRPC server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`,
//! answered as `reflection.proto` specifies. Built on tonic-reflection's
//! generated protos (`tonic_reflection::pb`), replacing its server, which
//! deviates from the spec (0.14): it answers a file without its transitive
//! dependencies, and ends the whole stream with a NOT_FOUND status for an
//! unknown symbol or file instead of an `error_response`.
//!
//! Behaviour, per request on one `ServerReflectionInfo` stream (the same as
//! grpc-go's `serverreflection.go`):
//! - `file_by_filename`, `file_containing_symbol`, `file_containing_extension`:
//!   the file, then its transitive imports that were not already sent on this
//!   stream ([`index::Index::with_dependencies`]).
//! - `all_extension_numbers_of_type`: the type's extension numbers with
//!   `base_type_name` set to it.
//! - `list_services`: every service of the registered descriptor sets.
//! - an unknown file, symbol, extension or type: an `error_response` with
//!   code NOT_FOUND (5) and a message naming it ([`quote`]: at most 64
//!   characters of it); the stream goes on.
//! - no `message_request` at all: the call ends with INVALID_ARGUMENT.
//!
//! Every response echoes `valid_host` and `original_request`. The two
//! versions are wire-identical, so v1alpha requests are transcoded to v1,
//! answered by the one implementation, and transcoded back.

pub(crate) mod index;

use crate::grpc::error::ServiceError;
use index::{Index, IndexError};
use messenger_proto::quote::quote;
use prost::Message;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_reflection::pb::{v1, v1alpha};
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The reflection service over the registered descriptor sets; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Reflection {
    index: Arc<Index>,
}

impl Reflection {
    /// Indexes the encoded `FileDescriptorSet`s (each with its imports).
    pub(crate) fn new(encoded_sets: &[&[u8]]) -> Result<Self, IndexError> {
        Ok(Self {
            index: Arc::new(Index::new(encoded_sets)?),
        })
    }

    /// The descriptor sets this server serves: messenger (with the well-known
    /// types it imports), health, and both reflection versions.
    pub(crate) fn standard() -> Result<Self, IndexError> {
        Self::new(&[
            messenger_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            v1::FILE_DESCRIPTOR_SET,
            v1alpha::FILE_DESCRIPTOR_SET,
        ])
    }

    /// `grpc.reflection.v1.ServerReflection`.
    pub(crate) fn v1(&self) -> v1::server_reflection_server::ServerReflectionServer<Self> {
        v1::server_reflection_server::ServerReflectionServer::new(self.clone())
    }

    /// `grpc.reflection.v1alpha.ServerReflection` (what grpcurl 1.8 speaks).
    pub(crate) fn v1alpha(
        &self,
    ) -> v1alpha::server_reflection_server::ServerReflectionServer<Self> {
        v1alpha::server_reflection_server::ServerReflectionServer::new(self.clone())
    }

    /// One stream's answers: `sent` lives as long as the stream.
    fn answers(
        &self,
        requests: impl Stream<Item = Result<v1::ServerReflectionRequest, Status>> + Send + 'static,
    ) -> Answers<v1::ServerReflectionResponse> {
        let index = Arc::clone(&self.index);
        let mut sent = HashSet::new();
        let mut ended = false;
        let answers = requests.map_while(move |request| {
            if ended {
                return None;
            }
            let answer = request.and_then(|r| answer(&index, r, &mut sent));
            ended = answer.is_err();
            Some(answer)
        });
        Box::pin(answers)
    }
}

/// The response to one request, or the status that ends the call.
fn answer(
    index: &Index,
    request: v1::ServerReflectionRequest,
    sent: &mut HashSet<String>,
) -> Result<v1::ServerReflectionResponse, Status> {
    let Some(message) = request.message_request.clone() else {
        return Err(ServiceError::EmptyReflectionRequest.into());
    };
    let files = |root: Option<&str>, what: String, sent: &mut HashSet<String>| match root {
        Some(root) => MessageResponse::FileDescriptorResponse(v1::FileDescriptorResponse {
            file_descriptor_proto: index.with_dependencies(root, sent),
        }),
        None => not_found(what),
    };
    let response = match message {
        MessageRequest::FileByFilename(name) => {
            let root = index.has_file(&name).then_some(name.as_str());
            files(root, format!("file {} not found", quote(&name)), sent)
        }
        MessageRequest::FileContainingSymbol(symbol) => files(
            index.file_of_symbol(&symbol),
            format!("symbol {} not found", quote(&symbol)),
            sent,
        ),
        MessageRequest::FileContainingExtension(v1::ExtensionRequest {
            containing_type,
            extension_number,
        }) => files(
            index.file_of_extension(&containing_type, extension_number),
            format!(
                "extension {extension_number} of {} not found",
                quote(&containing_type)
            ),
            sent,
        ),
        MessageRequest::AllExtensionNumbersOfType(name) => match index.extension_numbers(&name) {
            Some(numbers) => {
                MessageResponse::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
                    base_type_name: name,
                    extension_number: numbers,
                })
            }
            None => not_found(format!("type {} not found", quote(&name))),
        },
        MessageRequest::ListServices(_) => {
            MessageResponse::ListServicesResponse(v1::ListServiceResponse {
                service: index
                    .services()
                    .iter()
                    .map(|name| v1::ServiceResponse { name: name.clone() })
                    .collect(),
            })
        }
    };
    Ok(v1::ServerReflectionResponse {
        valid_host: request.host.clone(),
        original_request: Some(request),
        message_response: Some(response),
    })
}

fn not_found(message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(v1::ErrorResponse {
        error_code: Code::NotFound as i32,
        error_message: message,
    })
}

/// Re-encodes a message as its wire twin in the other reflection version.
fn transcode<A: Message, B: Message + Default>(message: &A) -> Result<B, Status> {
    B::decode(message.encode_to_vec().as_slice())
        .map_err(|e| ServiceError::ReflectionTranscode(e).into())
}

#[tonic::async_trait]
impl v1::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = Answers<v1::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        Ok(Response::new(self.answers(request.into_inner())))
    }
}

#[tonic::async_trait]
impl v1alpha::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = Answers<v1alpha::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1alpha::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let requests = request
            .into_inner()
            .map(|r| r.and_then(|r| transcode::<_, v1::ServerReflectionRequest>(&r)));
        let answers = self
            .answers(requests)
            .map(|r| r.and_then(|r| transcode::<_, v1alpha::ServerReflectionResponse>(&r)));
        Ok(Response::new(Box::pin(answers)))
    }
}
