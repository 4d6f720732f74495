//! TLS that cannot work, as the real binaries report it: the server's
//! certificate from another CA, for another name, or expired; the server
//! refusing the client's certificate, or wanting one the client does not
//! present (mTLS). Each is said once, at ERROR, in one line naming the
//! variable to fix, never as a WARN per retry; the client backs off; the
//! server's healthcheck says the same; and once subscribed, `/readyz` and
//! `/sendMessage` answer 503 with the reason.

use crate::tls_field::{path, run_healthcheck, server_files};
use messenger_tests::certs::{Ca, TestPki, req_x509};
use messenger_tests::procs::{Proc, spawn_server};
use messenger_tests::*;
use std::path::Path;

const MISCONFIGURED: &str = "TLS misconfiguration";
/// What the client logs (WARN) for a failure it takes as passing.
const PASSING: &str = "cannot subscribe";

/// One misconfigured pair: the server's TLS files and the client's.
struct Case<'a> {
    cert: &'a Path,
    key: &'a Path,
    /// `MESSENGER_TLS_CLIENT_CA` of the server (mTLS), if any.
    client_ca: Option<&'a Path>,
    /// The client's (and the healthcheck's) `MESSENGER_SERVER_CA`,
    /// `MESSENGER_CLIENT_CERT`, `MESSENGER_CLIENT_KEY`.
    client: &'a [(&'a str, &'a Path)],
    variable: &'a str,
    /// What both the client and the healthcheck must say.
    expected: &'a [&'a str],
}

/// Runs the real server and client as `case` sets them up; the client must
/// say `expected` (which names `variable`) once at ERROR, log no passing
/// failure, and back off between attempts; the server healthcheck says the same.
async fn reported_once(case: Case<'_>) {
    let (cert, key) = (path(case.cert), path(case.key));
    let client_ca = case.client_ca.map(path);
    let mut server_env = vec![
        ("MESSENGER_TLS_CERT", cert.as_str()),
        ("MESSENGER_TLS_KEY", key.as_str()),
    ];
    server_env.extend(
        client_ca
            .as_deref()
            .map(|ca| ("MESSENGER_TLS_CLIENT_CA", ca)),
    );
    let server = spawn_server(&server_env).await;
    let addr = server.grpc_addr.to_string();
    let files: Vec<(&str, String)> = case.client.iter().map(|(k, p)| (*k, path(p))).collect();
    let mut env = vec![
        ("MESSENGER_SERVER_ADDR", addr.as_str()),
        ("MESSENGER_HTTP_PORT", "0"),
        ("RUST_LOG", "info,messenger_client=debug"),
    ];
    env.extend(files.iter().map(|(k, v)| (*k, v.as_str())));
    let client = Proc::spawn("misconfigured client", "messenger-client", &env);
    let first = client
        .wait_line(MISCONFIGURED, |l| l.text.contains(MISCONFIGURED))
        .await;
    assert!(first.text.contains("ERROR"), "{}", first.text);
    let says =
        |text: &str| text.contains(case.variable) && case.expected.iter().all(|e| text.contains(e));
    assert!(
        says(&first.text),
        "expected {} and {:?} in: {}",
        case.variable,
        case.expected,
        first.text
    );
    let fifth = client
        .wait_line("the fifth failed attempt", |l| {
            l.text.contains("failures=5")
        })
        .await;
    // Backoff after failures 1..4 is at least 50 + 100 + 200 + 400 ms
    // (half of each capped exponential step); a hot loop takes ~0.
    let elapsed = fifth.logged_at() - first.logged_at();
    assert!(
        elapsed.num_milliseconds() >= 500,
        "attempts 1 to 5 took only {elapsed}"
    );
    let lines = client.lines();
    let count = |what: &str| lines.iter().filter(|l| l.text.contains(what)).count();
    assert_eq!(count(MISCONFIGURED), 1, "{}", client.tail());
    assert_eq!(count(PASSING), 0, "{}", client.tail());

    let probe = run_healthcheck(server.grpc_addr.port(), case.cert, case.key, case.client).await;
    let said = String::from_utf8_lossy(&probe.stderr);
    assert_eq!(probe.status.code(), Some(1), "{said}");
    assert!(says(&said), "{said}");

    assert_eq!(
        client.sigterm_and_wait().await,
        Some(0),
        "{}",
        client.tail()
    );
    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_reported_once() {
    let pki = TestPki::generate();
    reported_once(Case {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: None,
        client: &[("MESSENGER_SERVER_CA", &pki.other_ca)],
        variable: "MESSENGER_SERVER_CA",
        expected: &["not issued by a CA in MESSENGER_SERVER_CA"],
    })
    .await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("name test CA");
    let (cert, key) = server_files(dir.path(), &ca.server(&["elsewhere.example"]));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    reported_once(Case {
        cert: &cert,
        key: &key,
        client_ca: None,
        client: &[("MESSENGER_SERVER_CA", &ca_file)],
        variable: "MESSENGER_SERVER_ADDR",
        expected: &["not valid for"],
    })
    .await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("expiry test CA");
    let leaf = ca.server_valid(&["localhost", "127.0.0.1"], -30, -2);
    let (cert, key) = server_files(dir.path(), &leaf);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    reported_once(Case {
        cert: &cert,
        key: &key,
        client_ca: None,
        client: &[("MESSENGER_SERVER_CA", &ca_file)],
        variable: "MESSENGER_TLS_CERT",
        expected: &["has expired"],
    })
    .await;
}

/// The one-liner without `-addext subjectAltName` (CN=localhost only), as
/// the server's certificate and the client's CA: pinned, but valid for no
/// name (rustls ignores the CN). Said naming the certificate and the exact
/// `-addext` that fixes it.
#[tokio::test]
async fn the_one_liner_without_a_subject_alt_name_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = req_x509(dir.path(), "no-san", &[]);
    reported_once(Case {
        cert: &cert,
        key: &key,
        client_ca: None,
        client: &[("MESSENGER_SERVER_CA", &cert)],
        variable: "MESSENGER_TLS_CERT",
        // The client checks 127.0.0.1, the healthcheck localhost.
        expected: &[
            "without a subjectAltName, so not valid for ",
            "(rustls, like browsers and grpc-go, ignores the CN); reissue the server's \
             MESSENGER_TLS_CERT with -addext \"subjectAltName=",
        ],
    })
    .await;
}

/// The field report: the server refuses the client's certificate (mTLS,
/// from a CA it does not trust). TLS 1.3 refuses after the handshake; before
/// the fix that was a WARN "transport error" or "operation was canceled" on
/// every retry, naming nothing.
#[tokio::test]
async fn a_client_certificate_the_server_refuses_is_reported_once() {
    let pki = TestPki::generate();
    reported_once(Case {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: Some(&pki.ca),
        client: &[
            ("MESSENGER_SERVER_CA", &pki.ca),
            ("MESSENGER_CLIENT_CERT", &pki.stranger_cert),
            ("MESSENGER_CLIENT_KEY", &pki.stranger_key),
        ],
        variable: "MESSENGER_CLIENT_CERT",
        expected: &["refused this client's certificate"],
    })
    .await;
}

/// The same refusal when the client's certificate comes from a CA of the
/// same name but another key (certificates regenerated on one side only:
/// `make certs FORCE=1`): the server's alert is `DecryptError`, not
/// `UnknownCA` (found by review: a WARN per retry, naming nothing).
#[tokio::test]
async fn a_client_certificate_from_a_same_named_ca_is_reported_once() {
    let pki = TestPki::generate();
    let twin = Ca::new("messenger test CA").client("client1");
    let (cert, key) = (
        pki.dir.path().join("twin.pem"),
        pki.dir.path().join("twin.key"),
    );
    std::fs::write(&cert, &twin.cert_pem).unwrap();
    std::fs::write(&key, &twin.key_pem).unwrap();
    reported_once(Case {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: Some(&pki.ca),
        client: &[
            ("MESSENGER_SERVER_CA", &pki.ca),
            ("MESSENGER_CLIENT_CERT", &cert),
            ("MESSENGER_CLIENT_KEY", &key),
        ],
        variable: "MESSENGER_CLIENT_CERT",
        expected: &["refused this client's certificate", "DecryptError"],
    })
    .await;
}

#[tokio::test]
async fn no_client_certificate_for_a_server_that_wants_one_is_reported_once() {
    let pki = TestPki::generate();
    reported_once(Case {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: Some(&pki.ca),
        client: &[("MESSENGER_SERVER_CA", &pki.ca)],
        variable: "MESSENGER_CLIENT_CERT",
        expected: &["requires a client certificate (mTLS) and this client presents none"],
    })
    .await;
}

/// `/readyz` of a subscribed client until its JSON error contains `needle`.
async fn readyz_saying(client: &TestClient, needle: &str) -> (u16, String) {
    let ((status, json), _) = poll_until("/readyz to say why", WAIT, || async {
        let answer = client.get("/readyz").await;
        answer.1.to_string().contains(needle).then_some(answer)
    })
    .await;
    (
        status,
        json["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A subscribed client whose server comes back with a certificate it cannot
/// trust answers `/readyz` 503 with the reason and the variable to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_says_why_the_stream_is_down() {
    let pki = TestPki::generate();
    let first = TestServer::start_with(|c| {
        c.tls_cert = Some(pki.server_cert.clone());
        c.tls_key = Some(pki.server_key.clone());
    })
    .await;
    let port = first.addr.port();
    let client = TestClient::start_with(first.addr, |c| c.tls.ca = Some(pki.ca.clone())).await;
    let (status, _) = client.get("/readyz").await;
    assert_eq!(status, 200);
    first.stop().await.unwrap();

    let other = Ca::new("a CA the client does not trust");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_files(dir.path(), &other.server(&["localhost", "127.0.0.1"]));
    let second = TestServer::start_with(|c| {
        c.port = port;
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let (status, error) = readyz_saying(&client, "MESSENGER_SERVER_CA").await;
    assert_eq!(status, 503, "{error}");
    assert!(
        error.contains("not issued by a CA in MESSENGER_SERVER_CA"),
        "{error}"
    );
    client.stop().await;
    second.stop().await.unwrap();
}

/// The same client once the server starts to demand a certificate from
/// another CA (mTLS): `/readyz` and `/sendMessage` answer 503 naming
/// `MESSENGER_CLIENT_CERT`, and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_and_send_message_say_the_client_certificate_is_refused() {
    let pki = TestPki::generate();
    let first = TestServer::start_with(|c| {
        c.tls_cert = Some(pki.server_cert.clone());
        c.tls_key = Some(pki.server_key.clone());
    })
    .await;
    let port = first.addr.port();
    let client = TestClient::start_with(first.addr, |c| {
        c.tls.ca = Some(pki.ca.clone());
        c.tls.cert = Some(pki.stranger_cert.clone());
        c.tls.key = Some(pki.stranger_key.clone());
    })
    .await;
    first.stop().await.unwrap();

    let second = TestServer::start_with(|c| {
        c.port = port;
        c.tls_cert = Some(pki.server_cert.clone());
        c.tls_key = Some(pki.server_key.clone());
        c.tls_client_ca = Some(pki.ca.clone());
    })
    .await;
    let (status, error) = readyz_saying(&client, "MESSENGER_CLIENT_CERT").await;
    assert_eq!(status, 503, "{error}");
    assert!(
        error.contains("refused this client's certificate"),
        "{error}"
    );
    let body = serde_json::json!({"author": "a", "text": "refused"}).to_string();
    let (status, json) = client.post("/sendMessage", body).await;
    assert_eq!(status, 503, "{json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("MESSENGER_CLIENT_CERT"), "{error}");
    assert_eq!(second.hub.history().newest, 0, "nothing reached the chat");
    client.stop().await;
    second.stop().await.unwrap();
}
