//! TLS on the gRPC port: plaintext and untrusted peers fail cleanly (no hang),
//! mTLS demands a client certificate from the right CA, health and reflection
//! work over TLS, and the course's client scenario passes over TLS.

use futures_util::StreamExt;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_runtime::tls::ClientTlsFiles;
use messenger_tests::certs::TestPki;
use messenger_tests::*;
use std::path::Path;

async fn tls_server(pki: &TestPki, mtls: bool) -> TestServer {
    TestServer::start_with(|c| {
        c.tls_cert = Some(pki.server_cert.clone());
        c.tls_key = Some(pki.server_key.clone());
        c.tls_client_ca = mtls.then(|| pki.ca.clone());
    })
    .await
}

fn trusting(ca: &Path) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(ca.to_owned()),
        ..Default::default()
    }
}

fn with_identity(ca: &Path, cert: &Path, key: &Path) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(ca.to_owned()),
        cert: Some(cert.to_owned()),
        key: Some(key.to_owned()),
    }
}

/// A full call: connect (TLS handshake included) and one SendMessage.
async fn try_send(server: &TestServer, files: &ClientTlsFiles) -> Result<String, String> {
    let channel = tls_channel(server.addr, files)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = MessengerServerClient::new(channel);
    within("SendMessage over TLS", grpc_send(&mut client, "a", "b"))
        .await
        .map_err(|s| format!("status: {s:?}"))
}

#[tokio::test]
async fn plaintext_against_a_tls_server_fails_cleanly() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, false).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_lazy();
    let mut client = MessengerServerClient::new(channel);
    let result = within(
        "plaintext call to a TLS port",
        grpc_send(&mut client, "a", "b"),
    )
    .await;
    let status = result.expect_err("plaintext must not reach the service");
    // Unavailable (refused connection) or Unknown (broken pipe), by timing;
    // either way made by the transport, not sent by the service.
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        ),
        "{status:?}"
    );
    let from_transport =
        std::error::Error::source(&status).is_some_and(|e| e.is::<tonic::transport::Error>());
    assert!(from_transport, "{status:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_rejected() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, false).await;
    let err = try_send(&server, &trusting(&pki.other_ca))
        .await
        .unwrap_err();
    assert!(err.starts_with("connect"), "{err}");
    assert_eq!(
        try_send(&server, &trusting(&pki.ca)).await.map(|_| ()),
        Ok(())
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, true).await;
    let none = try_send(&server, &trusting(&pki.ca)).await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let stranger = with_identity(&pki.ca, &pki.stranger_cert, &pki.stranger_key);
    let stranger = try_send(&server, &stranger).await;
    assert!(
        stranger.is_err(),
        "client certificate from another CA: {stranger:?}"
    );
    let good = with_identity(&pki.ca, &pki.client_cert, &pki.client_key);
    assert_eq!(try_send(&server, &good).await.map(|_| ()), Ok(()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_work_over_tls() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1;
    let pki = TestPki::generate();
    let server = tls_server(&pki, false).await;
    let channel = tls_channel(server.addr, &trusting(&pki.ca)).await.unwrap();

    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: "mes_grpc.MessengerServer".into(),
    };
    let status = health.check(request).await.unwrap().into_inner().status;
    assert_eq!(status, 1, "SERVING");

    let mut reflection = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let response = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let listed = format!("{:?}", response.message_response);
    assert!(listed.contains("mes_grpc.MessengerServer"), "{listed}");
    server.stop().await.unwrap();
}

/// The course's HTTP scenario, with the server on TLS and both clients
/// trusting its CA: every message sent through either client reaches both,
/// in one order, with the sendTime the sender was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn course_scenario_through_two_clients_over_tls() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, false).await;
    let tls = |c: &mut messenger_client::Config| c.tls.ca = Some(pki.ca.clone());
    let client1 = TestClient::start_with(server.addr, tls).await;
    let client2 = TestClient::start_with(server.addr, tls).await;
    server.wait_subscribers(2).await;

    let mut sent = Vec::new();
    for i in 0..10 {
        let (via, author) = if i % 2 == 0 {
            (&client1, "client1")
        } else {
            (&client2, "client2")
        };
        let text = format!("message {i}");
        let send_time = via.send(author, &text).await;
        sent.push(Msg {
            author: author.into(),
            text,
            send_time,
        });
    }
    assert!(sent.windows(2).all(|w| w[0].send_time < w[1].send_time));
    assert_eq!(client1.collect(10).await, sent);
    assert_eq!(client2.collect(10).await, sent);
    client1.stop().await;
    client2.stop().await;
    server.stop().await.unwrap();
}
