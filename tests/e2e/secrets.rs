//! The real binaries with TLS and token auth on, at `RUST_LOG=trace`, with
//! OTLP export to an in-process receiver: a token revoked in the file and
//! reloaded with SIGHUP is refused, a refused client logs it once and backs
//! off, and no token string appears in any log line or exported span.

use chrono::{DateTime, Utc};
use messenger_proto::pb::SendMessageRequest;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_runtime::tls::ClientTlsFiles;
use messenger_tests::certs::{TestPki, random_token};
use messenger_tests::otlp::{OtlpReceiver, TraceParent};
use messenger_tests::procs::{Line, Proc, spawn_client, spawn_server};
use messenger_tests::{bearer, tls_channel};
use tonic::Code;

const REFUSED: &str = "refused this client's credentials";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_never_reach_logs_or_spans_and_sighup_revokes() {
    let pki = TestPki::generate();
    let (one, two, wrong) = (random_token(), random_token(), random_token());
    let tokens = pki.write("tokens", &format!("{one} client1\n{two} client2\n"));
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let tokens_path = path(&tokens);
    let common = |service: &'static str| {
        vec![
            ("RUST_LOG", "trace"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let mut env = common("messenger-server");
    env.extend([
        ("MESSENGER_TLS_CERT", cert.as_str()),
        ("MESSENGER_TLS_KEY", key.as_str()),
        ("MESSENGER_AUTH_TOKENS_FILE", tokens_path.as_str()),
    ]);
    let server = spawn_server(&env).await;
    let mut env1 = common("client1");
    env1.extend([
        ("MESSENGER_SERVER_CA", ca.as_str()),
        ("MESSENGER_CLIENT_TOKEN", one.as_str()),
    ]);
    let mut env2 = common("client2");
    env2.extend([
        ("MESSENGER_SERVER_CA", ca.as_str()),
        ("MESSENGER_CLIENT_TOKEN", two.as_str()),
    ]);
    let client1 = spawn_client(server.grpc_addr, &env1).await;
    let client2 = spawn_client(server.grpc_addr, &env2).await;

    let upstream = TraceParent::random();
    client1
        .send_with("client1", "hello", &[("traceparent", &upstream.header())])
        .await;
    let body = r#"{"author":"client2","text":"not mine"}"#.to_owned();
    let (status, json) = client1.post("/sendMessage", body, &[]).await;
    assert_eq!(status, 403, "{json}");
    client2.send("client2", "hi").await;

    let tls = ClientTlsFiles {
        ca: Some(pki.ca.clone()),
        ..Default::default()
    };
    let mut raw = MessengerServerClient::new(tls_channel(server.grpc_addr, &tls).await.unwrap());
    let message = || SendMessageRequest {
        author: "client1".into(),
        text: "raw".into(),
    };
    let status = raw.send_message(message()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = raw
        .send_message(bearer(message(), &wrong))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Revoke client2's token: rewrite the file, SIGHUP, wait for the reload.
    std::fs::write(&tokens, format!("{one} client1\n")).unwrap();
    server.proc.sighup();
    server
        .proc
        .wait_line("token reload", |l| l.text.contains("auth tokens reloaded"))
        .await;
    let status = raw.send_message(bearer(message(), &two)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let body = r#"{"author":"client2","text":"revoked"}"#.to_owned();
    let (status, json) = client2.post("/sendMessage", body, &[]).await;
    assert_eq!(status, 403, "{json}");
    // The reload ended client2's stream; its resubscribe is refused.
    client1.send("client1", "after revocation").await;
    client2
        .proc
        .wait_line(REFUSED, |l| l.text.contains(REFUSED))
        .await;

    otlp.wait_for("the server's SendMessage spans", |spans| {
        spans.iter().any(|s| {
            s.service == "messenger-server" && s.name == "mes_grpc.MessengerServer/SendMessage"
        })
    })
    .await;
    for proc in [&client1.proc, &client2.proc, &server.proc] {
        assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
    }

    let mut haystack = otlp.raw_exports();
    assert!(
        haystack.contains("MessengerServer/SendMessage"),
        "the export was captured"
    );
    for proc in [&client1.proc, &client2.proc, &server.proc] {
        let lines = proc.lines();
        assert!(
            lines.len() > 20,
            "{} logged little at trace level",
            proc.name()
        );
        haystack.extend(lines.iter().map(|l| format!("{}\n", l.text)));
    }
    for (name, token) in [("client1", &one), ("client2", &two), ("wrong", &wrong)] {
        if let Some(at) = haystack.find(token.as_str()) {
            let from = at.saturating_sub(300);
            panic!(
                "the {name} token leaked:\n...{}",
                &haystack[from..at + token.len()]
            );
        }
    }
}

/// A client whose token is refused logs that once, clearly, and retries with
/// growing backoff rather than spinning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_client_logs_once_and_backs_off() {
    let pki = TestPki::generate();
    let tokens = pki.write("tokens", &format!("{} someone\n", random_token()));
    let tokens = path(&tokens);
    let server = spawn_server(&[("MESSENGER_AUTH_TOKENS_FILE", tokens.as_str())]).await;
    let addr = server.grpc_addr.to_string();
    let client = Proc::spawn(
        "refused client",
        "messenger-client",
        &[
            ("MESSENGER_SERVER_ADDR", addr.as_str()),
            ("MESSENGER_HTTP_PORT", "0"),
            ("MESSENGER_CLIENT_TOKEN", "not-a-known-token"),
            ("RUST_LOG", "info,messenger_client=debug"),
        ],
    );
    let first = client
        .wait_line(REFUSED, |l| l.text.contains(REFUSED))
        .await;
    assert!(
        first.text.contains("MESSENGER_CLIENT_TOKEN"),
        "{}",
        first.text
    );
    let fifth = client
        .wait_line("the fifth failed attempt", |l| {
            l.text.contains("failures=5")
        })
        .await;
    // Backoff after failures 1..4 is at least 50 + 100 + 200 + 400 ms
    // (half of each capped exponential step); a spinning loop takes ~0.
    let elapsed = log_time(&fifth) - log_time(&first);
    assert!(
        elapsed.num_milliseconds() >= 500,
        "attempts 1 to 5 took only {elapsed}"
    );
    let refusals = client
        .lines()
        .iter()
        .filter(|l| l.text.contains(REFUSED))
        .count();
    assert_eq!(refusals, 1, "{}", client.tail());
    assert!(
        !client
            .lines()
            .iter()
            .any(|l| l.text.contains("not-a-known-token")),
        "{}",
        client.tail()
    );
    assert_eq!(
        client.sigterm_and_wait().await,
        Some(0),
        "{}",
        client.tail()
    );
    drop(server);
}

/// The timestamp that starts a text log line.
fn log_time(line: &Line) -> DateTime<Utc> {
    let stamp = line.text.split_whitespace().next().unwrap_or_default();
    stamp
        .parse()
        .unwrap_or_else(|e| panic!("no timestamp ({e}) in {:?}", line.text))
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}
