//! Token auth: statuses over gRPC for a missing, wrong, foreign-author and
//! revoked token; health and reflection stay open; the HTTP client maps the
//! server's refusals to 401/403 JSON.

use messenger_proto::pb::SendMessageRequest;
use messenger_tests::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use tonic::Code;

const ONE: &str = "tok-one-5f2c9a";
const TWO: &str = "tok-two-81d0e7";

fn tokens_file(dir: &Path, contents: &str) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, contents).unwrap();
    path
}

async fn auth_server(dir: &Path, port: u16) -> TestServer {
    let tokens = tokens_file(
        dir,
        &format!("# test tokens\n{ONE} client1\n{TWO} client two\n"),
    );
    TestServer::start_with(|c| {
        c.auth_tokens_file = Some(tokens);
        c.port = port;
    })
    .await
}

fn message(author: &str) -> SendMessageRequest {
    SendMessageRequest {
        author: author.into(),
        text: "hi".into(),
    }
}

/// The status of a call, with a check that it never echoes a token.
fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => {
            for token in [ONE, TWO, "wrong-token"] {
                assert!(!status.message().contains(token), "{status:?}");
            }
            status.code()
        }
    }
}

#[tokio::test]
async fn grpc_statuses_for_each_kind_of_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path(), 0).await;
    let mut client = server.grpc().await;

    let send = client.send_message(message("client1")).await;
    assert_eq!(code(send), Code::Unauthenticated);
    assert_eq!(code(client.read_messages(()).await), Code::Unauthenticated);
    let wrong = bearer(message("client1"), "wrong-token");
    assert_eq!(
        code(client.send_message(wrong).await),
        Code::PermissionDenied
    );
    let wrong = bearer((), "wrong-token");
    assert_eq!(
        code(client.read_messages(wrong).await),
        Code::PermissionDenied
    );
    // Two copies joined with a comma (RFC 9110 §5.3) are two copies.
    let mut joined = tonic::Request::new(message("client1"));
    let value = format!("Bearer {ONE}, Bearer {ONE}").parse().unwrap();
    joined.metadata_mut().insert("authorization", value);
    let refused = client.send_message(joined).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(
        refused.message(),
        "the `authorization` metadata was sent 2 times; send one `Bearer <token>`"
    );
    let foreign = bearer(message("client two"), ONE);
    assert_eq!(
        code(client.send_message(foreign).await),
        Code::PermissionDenied
    );

    let mut stream = client
        .read_messages(bearer((), TWO))
        .await
        .unwrap()
        .into_inner();
    let own = bearer(message("client1"), ONE);
    assert_eq!(code(client.send_message(own).await), Code::Ok);
    let spaced = bearer(message("client two"), TWO);
    assert_eq!(code(client.send_message(spaced).await), Code::Ok);
    let got = read_n(&mut stream, 2).await;
    assert_eq!(got[0].author, "client1");
    assert_eq!(got[1].author, "client two");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path(), 0).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = HealthCheckRequest {
        service: "mes_grpc.MessengerServer".into(),
    };
    let health = HealthClient::new(channel.clone()).check(request).await;
    assert_eq!(health.unwrap().into_inner().status, 1, "SERVING");
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request};
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let reflection = ServerReflectionClient::new(channel)
        .server_reflection_info(futures_util::stream::iter([request]))
        .await;
    assert!(reflection.is_ok(), "{reflection:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_open_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path(), 0).await;
    let auth = server.auth.clone().expect("auth is on");
    let mut client = server.grpc().await;
    let mut revoked_stream = client
        .read_messages(bearer((), ONE))
        .await
        .unwrap()
        .into_inner();
    let mut kept_stream = client
        .read_messages(bearer((), TWO))
        .await
        .unwrap()
        .into_inner();

    tokens_file(dir.path(), &format!("{TWO} client two\n"));
    assert_eq!(auth.reload().unwrap(), 1);
    // At once, on a quiet chat: it used to wait for the next message.
    let ended = within("revoked stream ends", revoked_stream.message()).await;
    assert_eq!(code(ended), Code::PermissionDenied);
    let revoked = bearer(message("client1"), ONE);
    assert_eq!(
        code(client.send_message(revoked).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.read_messages(bearer((), ONE)).await),
        Code::PermissionDenied
    );
    let kept = bearer(message("client two"), TWO);
    assert_eq!(code(client.send_message(kept).await), Code::Ok);

    assert_eq!(read_n(&mut kept_stream, 1).await[0].author, "client two");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_client_maps_refusals_to_403_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path(), 0).await;
    let auth = server.auth.clone().expect("auth is on");
    let client = TestClient::start_with(server.addr, |c| {
        c.client_token = Some(messenger_client::config::Token::new(ONE));
    })
    .await;
    client.send("client1", "mine").await;

    let (status, json) = client
        .post(
            "/sendMessage",
            r#"{"author":"client two","text":"not mine"}"#,
        )
        .await;
    assert_eq!(status, 403, "{json}");
    assert!(json["error"].as_str().is_some(), "{json}");
    assert!(!json.to_string().contains(ONE), "{json}");

    tokens_file(dir.path(), &format!("{TWO} client two\n"));
    auth.reload().unwrap();
    let (status, json) = client
        .post(
            "/sendMessage",
            r#"{"author":"client1","text":"after revocation"}"#,
        )
        .await;
    assert_eq!(status, 403, "{json}");
    assert!(json["error"].as_str().is_some(), "{json}");
    client.stop().await;
    server.stop().await.unwrap();
}

/// A client without a token, subscribed to a server without auth, finds the
/// server restarted with auth: its subscribe is refused, and sends get 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_client_maps_a_missing_token_to_401_json() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open = TestServer::start_with(|c| c.port = port).await;
    let client = TestClient::start(open.addr).await;
    open.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path(), port).await;
    // 503 (reconnecting) until the client's next subscribe attempt is refused.
    let (status, json) = within("a refused subscribe", async {
        loop {
            let answer = client
                .post("/sendMessage", r#"{"author":"client1","text":"x"}"#)
                .await;
            if answer.0 != 503 {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(status, 401, "{json}");
    assert!(json["error"].as_str().is_some(), "{json}");
    client.stop().await;
    server.stop().await.unwrap();
}

/// Refused credentials are counted like any other outcome, per method and
/// code, and a good token with whitespace around it is accepted (RFC 9110
/// §5.5; grpcio sends a leading space as written).
#[tokio::test]
async fn refusals_are_counted_in_the_grpc_server_metrics() {
    use messenger_tests::procs::spawn_server;
    use messenger_tests::prom::wait_metrics;
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), &format!("{ONE} client1\n"));
    let tokens = tokens.to_str().unwrap();
    let server = spawn_server(&[("MESSENGER_AUTH_TOKENS_FILE", tokens)]).await;
    let mut client = server.grpc().await;
    assert_eq!(
        code(client.send_message(message("client1")).await),
        Code::Unauthenticated
    );
    let wrong = bearer(message("client1"), "wrong-token");
    assert_eq!(
        code(client.send_message(wrong).await),
        Code::PermissionDenied
    );
    let wrong = bearer((), "wrong-token");
    assert_eq!(
        code(client.read_messages(wrong).await),
        Code::PermissionDenied
    );
    let mut padded = tonic::Request::new(message("client1"));
    let value = format!(" Bearer {ONE} ").parse().unwrap();
    padded.metadata_mut().insert("authorization", value);
    assert_eq!(code(client.send_message(padded).await), Code::Ok);

    let handled = |method, code| {
        [
            ("grpc_method", method),
            ("grpc_code", code),
            ("grpc_service", "mes_grpc.MessengerServer"),
        ]
    };
    let m = wait_metrics(&server.metrics_url(), "refusals counted", |m| {
        m.sum("grpc_server_handled_total", &[]) >= 4.0
    })
    .await;
    let count = |method, code| m.sum("grpc_server_handled_total", &handled(method, code));
    assert_eq!(count("SendMessage", "Unauthenticated"), 1.0);
    assert_eq!(count("SendMessage", "PermissionDenied"), 1.0);
    assert_eq!(count("ReadMessages", "PermissionDenied"), 1.0);
    assert_eq!(count("SendMessage", "OK"), 1.0);
    let started = |method| {
        let labels = [("grpc_method", method)];
        m.sum("grpc_server_started_total", &labels)
    };
    assert_eq!(
        (started("SendMessage"), started("ReadMessages")),
        (3.0, 1.0)
    );
}
