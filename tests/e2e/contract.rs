//! proto/CONTRACT.md's gRPC rules: sendTime, subscription window, health, reflection, validation.

use messenger_proto::pb::SendMessageRequest;
use messenger_tests::*;
use std::collections::HashSet;
use tonic::Code;

fn assert_nine_digits(s: &str) {
    let b = s.as_bytes();
    assert_eq!(b.len(), 30, "{s}");
    assert!(
        s.ends_with('Z') && b[19] == b'.' && b[20..29].iter().all(u8::is_ascii_digit),
        "{s}"
    );
    assert!(
        !s[20..29].ends_with("000"),
        "nanos are a multiple of 1000: {s}"
    );
}

/// A reply received before the next send starts orders that send after it,
/// whichever connection either used.
#[tokio::test]
async fn a_later_send_on_another_connection_gets_a_later_send_time() {
    let server = TestServer::start().await;
    let mut connections = [
        server.grpc().await,
        server.grpc().await,
        server.grpc().await,
    ];
    let mut last = String::new();
    for i in 0..300 {
        let t = grpc_send(&mut connections[i % 3], "a", &i.to_string())
            .await
            .unwrap();
        assert!(t > last, "send {i}: {t} is not after {last}");
        last = t;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_times_are_unique_and_increase_across_connections() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for c in 0..4 {
        let mut client = server.grpc().await;
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for i in 0..100 {
                times.push(
                    grpc_send(&mut client, &format!("c{c}"), &i.to_string())
                        .await
                        .unwrap(),
                );
            }
            times
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        let times = task.await.unwrap();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "per-connection order"
        );
        times.iter().for_each(|t| assert_nine_digits(t));
        all.extend(times);
    }
    assert_eq!(all.len(), 400, "every sendTime is unique");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn stream_gets_exactly_the_messages_after_it_subscribed() {
    let server = TestServer::start().await;
    let mut sender = server.grpc().await;
    grpc_send(&mut sender, "a", "before").await.unwrap();
    let mut stream = server.subscribe().await;
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        let send_time = grpc_send(&mut sender, "a", text).await.unwrap();
        sent.push(Msg {
            author: "a".into(),
            text: text.into(),
            send_time,
        });
    }
    assert_eq!(
        read_n(&mut stream, 3).await,
        sent,
        "whole messages, in order, none from before"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn empty_fields_are_allowed_and_oversized_fields_are_invalid() {
    let server = TestServer::start_with(|c| c.max_text_bytes = 100).await;
    let mut client = server.grpc().await;
    let mut stream = server.subscribe().await;
    let empty = grpc_send(&mut client, "", "").await.unwrap();
    assert_nine_digits(&empty);

    let err = grpc_send(&mut client, "a", &"x".repeat(101))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("`text` is 101 bytes; the limit is 100"),
        "{}",
        err.message()
    );
    let err = grpc_send(&mut client, &"é".repeat(129), "t")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("`author` is 258 bytes; the limit is 256"),
        "{}",
        err.message()
    );
    // Far past the decoding limit: the codec refuses it; nothing panics.
    // "Sent or received message was larger than configured limit" is
    // RESOURCE_EXHAUSTED in grpc/grpc doc/statuscodes.md (tonic alone: OUT_OF_RANGE).
    let err = grpc_send(&mut client, "a", &"x".repeat(2 << 20))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    let ok = grpc_send(&mut client, "a", &"x".repeat(100)).await.unwrap();
    let got = read_n(&mut stream, 2).await;
    assert_eq!(
        got[0],
        Msg {
            author: "".into(),
            text: "".into(),
            send_time: empty
        }
    );
    assert_eq!(got[1].send_time, ok, "rejected messages were not broadcast");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_reports_serving_overall_and_for_the_service() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "mes_grpc.MessengerServer"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use futures_util::StreamExt;
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "mes_grpc.MessengerServer",
    ];

    let mut c1 = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let resp = c1
        .server_reflection_info(tokio_stream_once(req))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1 response {resp:?}")
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);

    let mut c2 = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let resp = c2
        .server_reflection_info(tokio_stream_once(req))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1alpha response {resp:?}")
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);
    server.stop().await.unwrap();
}

fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::iter([item])
}

#[tokio::test]
async fn send_response_time_equals_the_streamed_time() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe().await;
    let mut client = server.grpc().await;
    let request = SendMessageRequest {
        author: "x".into(),
        text: "y".into(),
    };
    let response = client.send_message(request).await.unwrap().into_inner();
    let streamed = within("streamed message", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.send_time, streamed.send_time);
    server.stop().await.unwrap();
}
