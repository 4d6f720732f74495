//! The standard services as their own `.proto` files specify, case by case,
//! over real gRPC: reflection v1 and v1alpha (`reflection.proto`) and
//! `grpc.health.v1` (`health.proto`). Each assertion quotes the rule it checks.

use futures_util::StreamExt;
use messenger_tests::*;
use prost::Message;
use prost_types::FileDescriptorProto;
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

const EMPTY: &str = "google/protobuf/empty.proto";
const TIMESTAMP: &str = "google/protobuf/timestamp.proto";

/// One `ServerReflectionInfo` stream, spoken in either version (requests
/// and responses are built as v1 and re-encoded: the versions share a wire format).
struct Reflection {
    requests: mpsc::Sender<v1::ServerReflectionRequest>,
    responses: futures_util::stream::BoxStream<
        'static,
        Result<v1::ServerReflectionResponse, tonic::Status>,
    >,
}

fn recode<A: Message, B: Message + Default>(m: &A) -> B {
    B::decode(m.encode_to_vec().as_slice()).expect("wire-identical versions")
}

impl Reflection {
    async fn open(channel: Channel, alpha: bool) -> Self {
        let (requests, rx) = mpsc::channel(8);
        let rx = ReceiverStream::new(rx);
        let responses = if alpha {
            let mut client =
                v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
            let rx = rx.map(|r| recode::<_, v1alpha::ServerReflectionRequest>(&r));
            let stream = within("v1alpha stream", client.server_reflection_info(rx))
                .await
                .expect("v1alpha reflection")
                .into_inner();
            stream.map(|r| r.map(|r| recode(&r))).boxed()
        } else {
            let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
            within("v1 stream", client.server_reflection_info(rx))
                .await
                .expect("v1 reflection")
                .into_inner()
                .boxed()
        };
        Self {
            requests,
            responses,
        }
    }

    async fn ask(&mut self, request: MessageRequest) -> MessageResponse {
        let request = v1::ServerReflectionRequest {
            host: "reflection-test".into(),
            message_request: Some(request),
        };
        self.requests
            .send(request.clone())
            .await
            .expect("stream open");
        let response = within("reflection answer", self.responses.next())
            .await
            .expect("an answer, not the end of the stream")
            .expect("an answer, not a status");
        assert_eq!(response.valid_host, "reflection-test");
        assert_eq!(
            response.original_request,
            Some(request),
            "original_request is echoed"
        );
        response.message_response.expect("message_response set")
    }

    /// The names of the files in a file answer, in order.
    async fn files(&mut self, request: MessageRequest) -> Vec<String> {
        match self.ask(request).await {
            MessageResponse::FileDescriptorResponse(r) => r
                .file_descriptor_proto
                .iter()
                .map(|raw| {
                    FileDescriptorProto::decode(raw.as_slice())
                        .unwrap()
                        .name()
                        .to_owned()
                })
                .collect(),
            other => panic!("expected files, got {other:?}"),
        }
    }

    async fn not_found(&mut self, request: MessageRequest) -> String {
        match self.ask(request).await {
            MessageResponse::ErrorResponse(e) => {
                assert_eq!(e.error_code, tonic::Code::NotFound as i32, "{e:?}");
                e.error_message
            }
            other => panic!("expected an error_response, got {other:?}"),
        }
    }
}

async fn plain_channel(server: &TestServer) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{}", server.addr)).unwrap();
    within("connect", endpoint.connect()).await.unwrap()
}

/// "answer file_by_filename, file_containing_symbol, file_containing_extension
/// requests with transitive dependencies ... allowed to avoid sending
/// FileDescriptorProtos that were previously sent ... in the stream."
async fn transitive_dependencies_once_per_stream(alpha: bool) {
    let server = TestServer::start().await;
    let mut r = Reflection::open(plain_channel(&server).await, alpha).await;
    let symbol = MessageRequest::FileContainingSymbol("mes_grpc.MessengerServer".into());
    let first = r.files(symbol.clone()).await;
    assert_eq!(first[0], "messenger.proto", "{first:?}");
    let set: BTreeSet<_> = first.iter().map(String::as_str).collect();
    assert_eq!(
        set,
        BTreeSet::from(["messenger.proto", EMPTY, TIMESTAMP]),
        "{first:?}"
    );
    assert_eq!(
        set.len(),
        first.len(),
        "no file twice in one answer: {first:?}"
    );
    // Already sent on this stream: only the requested file itself again.
    assert_eq!(r.files(symbol).await, ["messenger.proto"]);
    let by_name = MessageRequest::FileByFilename("messenger.proto".into());
    assert_eq!(r.files(by_name.clone()).await, ["messenger.proto"]);
    assert_eq!(
        r.files(MessageRequest::FileByFilename(EMPTY.into())).await,
        [EMPTY]
    );
    // A new stream starts with nothing sent.
    let mut fresh = Reflection::open(plain_channel(&server).await, alpha).await;
    assert_eq!(fresh.files(by_name).await.len(), 3);
    let method =
        MessageRequest::FileContainingSymbol("mes_grpc.MessengerServer.SendMessage".into());
    assert_eq!(fresh.files(method).await, ["messenger.proto"]);
    // Closing the request side ends each call (an open one would hold shutdown).
    drop((r, fresh));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn v1_answers_files_with_transitive_dependencies_once_per_stream() {
    transitive_dependencies_once_per_stream(false).await;
}

#[tokio::test]
async fn v1alpha_answers_files_with_transitive_dependencies_once_per_stream() {
    transitive_dependencies_once_per_stream(true).await;
}

/// Unknown names get an `error_response` with NOT_FOUND ("This message is
/// used when an error occurs"; grpc-go answers so) and the stream goes on;
/// `list_services` lists "the full names of registered services".
async fn errors_and_lists(alpha: bool) {
    let server = TestServer::start().await;
    let mut r = Reflection::open(plain_channel(&server).await, alpha).await;
    let missing = r
        .not_found(MessageRequest::FileContainingSymbol("mes_grpc.Nope".into()))
        .await;
    assert!(missing.contains("mes_grpc.Nope"), "{missing}");
    let missing = r
        .not_found(MessageRequest::FileByFilename("nope.proto".into()))
        .await;
    assert!(missing.contains("nope.proto"), "{missing}");
    r.not_found(MessageRequest::FileContainingExtension(
        v1::ExtensionRequest {
            containing_type: "mes_grpc.SendMessageRequest".into(),
            extension_number: 100,
        },
    ))
    .await;
    r.not_found(MessageRequest::AllExtensionNumbersOfType(
        "mes_grpc.Nope".into(),
    ))
    .await;
    let numbers = r
        .ask(MessageRequest::AllExtensionNumbersOfType(
            "mes_grpc.SendMessageRequest".into(),
        ))
        .await;
    assert_eq!(
        numbers,
        MessageResponse::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
            base_type_name: "mes_grpc.SendMessageRequest".into(),
            extension_number: vec![],
        })
    );
    let MessageResponse::ListServicesResponse(list) =
        r.ask(MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "mes_grpc.MessengerServer",
        ]
    );
    // A request with no message_request is not a reflection request: the call fails.
    r.requests
        .send(v1::ServerReflectionRequest::default())
        .await
        .unwrap();
    let end = within("end of stream", r.responses.next())
        .await
        .expect("a status");
    assert_eq!(end.unwrap_err().code(), tonic::Code::InvalidArgument);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn v1_unknown_names_are_not_found_and_the_stream_goes_on() {
    errors_and_lists(false).await;
}

#[tokio::test]
async fn v1alpha_unknown_names_are_not_found_and_the_stream_goes_on() {
    errors_and_lists(true).await;
}
