//! `grpc.health.v1.Health` as `health.proto` specifies, case by case: on the
//! real server, and on the server's health service alone (in-process on
//! 127.0.0.1:0) where a test must change a status.

use futures_util::StreamExt;
use messenger_tests::*;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

async fn health_client(addr: std::net::SocketAddr) -> HealthClient<Channel> {
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    HealthClient::new(within("connect", endpoint.connect()).await.unwrap())
}

async fn next(stream: &mut tonic::Streaming<HealthCheckResponse>) -> Wire {
    let response = within("a Watch message", stream.next())
        .await
        .expect("the Watch call stays open")
        .expect("a message, not a status");
    Wire::try_from(response.status).expect("a known status")
}

/// "If the requested service is unknown, the call will fail with status
/// NOT_FOUND"; the empty name is the server as a whole.
#[tokio::test]
async fn check_answers_known_services_and_not_found_for_others() {
    let server = TestServer::start().await;
    let mut health = health_client(server.addr).await;
    for known in ["", "mes_grpc.MessengerServer"] {
        let status = health
            .check(request(known))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, Wire::Serving as i32, "{known:?}");
    }
    let unknown = health.check(request("mes_grpc.Nope")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let mut watch = health
        .watch(request("mes_grpc.MessengerServer"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut watch).await, Wire::Serving);
    drop(watch);
    server.stop().await.unwrap();
}

/// "If the requested service is unknown when the call is received, the
/// server will send a message setting the serving status to SERVICE_UNKNOWN
/// but will *not* terminate the call. If at some future point, the serving
/// status of the service becomes known, the server will send a new message";
/// then "a new message whenever the service's serving status changes".
#[tokio::test]
async fn watch_of_an_unknown_service_stays_open_and_reports_changes() {
    let (reporter, service) = messenger_server::grpc::health::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let mut health = health_client(addr).await;
    let mut watch = health.watch(request("later")).await.unwrap().into_inner();
    assert_eq!(next(&mut watch).await, Wire::ServiceUnknown);
    let check = health.check(request("later")).await.unwrap_err();
    assert_eq!(
        check.code(),
        tonic::Code::NotFound,
        "still unknown to Check"
    );

    reporter
        .set_service_status("later", ServingStatus::Serving)
        .await;
    assert_eq!(next(&mut watch).await, Wire::Serving);
    // The same status again is no change: the next message is the real one.
    reporter
        .set_service_status("later", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("later", ServingStatus::NotServing)
        .await;
    assert_eq!(next(&mut watch).await, Wire::NotServing);
    let status = health
        .check(request("later"))
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, Wire::NotServing as i32);
    drop(watch);
    stop.cancel();
    within("health server stops", serving)
        .await
        .unwrap()
        .unwrap();
}
