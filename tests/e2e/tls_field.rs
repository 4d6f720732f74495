//! TLS as people set it up: the self-signed certificate of the common
//! `openssl req -x509` one-liner (CA:TRUE) works as the server's certificate
//! and the client's CA at once, through every TLS client we have; and a
//! certificate that cannot work (another CA, another name, expired) is
//! reported once, at ERROR, in one line naming the variable to fix, while the
//! client backs off and `/readyz` says why.

use messenger_runtime::tls::ClientTlsFiles;
use messenger_tests::certs::{Ca, TestPki, openssl_self_signed, openssl_v1_client};
use messenger_tests::procs::{Proc, binary, spawn_server};
use messenger_tests::*;
use std::path::{Path, PathBuf};

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The field report's exact repro, end to end: the one-liner's cert.pem and
/// key.pem as MESSENGER_TLS_CERT/KEY, the same cert.pem as MESSENGER_SERVER_CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openssl_one_liner_certificate_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path());
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;

    // A gRPC caller (the tests' helper) trusting cert.pem.
    let files = ClientTlsFiles {
        ca: Some(cert.clone()),
        ..Default::default()
    };
    let channel = tls_channel(server.addr, &files)
        .await
        .expect("the pinned CA:TRUE certificate is accepted");
    let mut grpc =
        messenger_proto::pb::messenger_server_client::MessengerServerClient::new(channel);
    within("SendMessage", grpc_send(&mut grpc, "grpc", "hello"))
        .await
        .unwrap();

    // Two HTTP clients: a message sent through one reaches both.
    let tls = |c: &mut messenger_client::Config| c.server_ca = Some(cert.clone());
    let client1 = TestClient::start_with(server.addr, tls).await;
    let client2 = TestClient::start_with(server.addr, tls).await;
    server.wait_subscribers(2).await;
    let send_time = client1.send("client1", "over the one-liner's TLS").await;
    let expected = vec![Msg {
        author: "client1".into(),
        text: "over the one-liner's TLS".into(),
        send_time,
    }];
    assert_eq!(client1.collect(1).await, expected);
    assert_eq!(client2.collect(1).await, expected);

    // The container probe, the real binary, against the same server.
    let probe = run_healthcheck(server.addr.port(), &cert, &key, &cert).await;
    assert_eq!(probe.status.code(), Some(0), "{probe:?}");

    client1.stop().await;
    client2.stop().await;
    server.stop().await.unwrap();
}

/// `messenger-server healthcheck` as the image runs it, with `ca` as MESSENGER_SERVER_CA.
async fn run_healthcheck(port: u16, cert: &Path, key: &Path, ca: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(binary("messenger-server"));
    command
        .arg("healthcheck")
        .env_clear()
        .env("MESSENGER_SERVER_HOST", "127.0.0.1")
        .env("MESSENGER_SERVER_PORT", port.to_string())
        .env("MESSENGER_TLS_CERT", cert)
        .env("MESSENGER_TLS_KEY", key)
        .env("MESSENGER_SERVER_CA", ca);
    let run = tokio::task::spawn_blocking(move || command.output().expect("run healthcheck"));
    within("healthcheck exits", run).await.unwrap()
}

/// A server certificate/key pair written to `dir`.
fn server_files(dir: &Path, leaf: &messenger_tests::certs::Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (cert, key)
}

const MISCONFIGURED: &str = "TLS misconfiguration";

/// Runs the real server with `cert`/`key` and the real client trusting `ca`;
/// the client must say `expected` (which names `variable`) once at ERROR and
/// back off between attempts; the server healthcheck says the same.
async fn reported_once(cert: &Path, key: &Path, ca: &Path, variable: &str, expected: &str) {
    let (cert_s, key_s, ca_s) = (path(cert), path(key), path(ca));
    let server = spawn_server(&[
        ("MESSENGER_TLS_CERT", &cert_s),
        ("MESSENGER_TLS_KEY", &key_s),
    ])
    .await;
    let addr = server.grpc_addr.to_string();
    let client = Proc::spawn(
        "misconfigured client",
        "messenger-client",
        &[
            ("MESSENGER_SERVER_ADDR", addr.as_str()),
            ("MESSENGER_HTTP_PORT", "0"),
            ("MESSENGER_SERVER_CA", &ca_s),
            ("RUST_LOG", "info,messenger_client=debug"),
        ],
    );
    let first = client
        .wait_line(MISCONFIGURED, |l| l.text.contains(MISCONFIGURED))
        .await;
    assert!(first.text.contains("ERROR"), "{}", first.text);
    assert!(
        first.text.contains(variable) && first.text.contains(expected),
        "expected {variable} and {expected:?} in: {}",
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
    let errors = client
        .lines()
        .iter()
        .filter(|l| l.text.contains(MISCONFIGURED))
        .count();
    assert_eq!(errors, 1, "{}", client.tail());

    let probe = run_healthcheck(server.grpc_addr.port(), cert, key, ca).await;
    let said = String::from_utf8_lossy(&probe.stderr);
    assert_eq!(probe.status.code(), Some(1), "{said}");
    assert!(said.contains(variable) && said.contains(expected), "{said}");

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
    reported_once(
        &pki.server_cert,
        &pki.server_key,
        &pki.other_ca,
        "MESSENGER_SERVER_CA",
        "not issued by a CA in MESSENGER_SERVER_CA",
    )
    .await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("name test CA");
    let (cert, key) = server_files(dir.path(), &ca.server(&["elsewhere.example"]));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    reported_once(
        &cert,
        &key,
        &ca_file,
        "MESSENGER_SERVER_ADDR",
        "not valid for",
    )
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
    reported_once(&cert, &key, &ca_file, "MESSENGER_TLS_CERT", "has expired").await;
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
    let client = TestClient::start_with(first.addr, |c| c.server_ca = Some(pki.ca.clone())).await;
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
    let (status, json) = within("/readyz to say why", async {
        loop {
            let answer = client.get("/readyz").await;
            if answer.1.to_string().contains("MESSENGER_SERVER_CA") {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(status, 503, "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("not issued by a CA in MESSENGER_SERVER_CA"),
        "{error}"
    );
    client.stop().await;
    second.stop().await.unwrap();
}

/// Runs `bin` with `env`, expecting a usage error (exit 2, one line of
/// stderr), which is returned.
fn usage_error(bin: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(binary(bin))
        .env("MESSENGER_SERVER_HOST", "127.0.0.1")
        .env("MESSENGER_SERVER_PORT", "0")
        .env("MESSENGER_METRICS_PORT", "0")
        .env("MESSENGER_SERVER_ADDR", "127.0.0.1:9")
        .env("MESSENGER_HTTP_HOST", "127.0.0.1")
        .env("MESSENGER_HTTP_PORT", "0")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{bin} {env:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{bin} {env:?}: {stderr}"
    );
    stderr
}

/// A key that belongs to another certificate (two `openssl req` runs, files
/// mixed up) is the same mistake wherever a cert/key pair is read: the
/// server's certificate, the client's mTLS certificate and the server's
/// certificate for a `rediss://` broker. Each is a usage error at start
/// naming both variables and both files, never a failed handshake later. So
/// is an X.509 v1 certificate, naming the certificate and how to re-issue it.
#[test]
fn a_key_of_another_certificate_or_a_v1_certificate_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mixed-up files CA");
    let (one, other) = (ca.server(&["127.0.0.1"]), ca.client("other"));
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        path(&p)
    };
    let (cert, key) = (
        write("one.pem", &one.cert_pem),
        write("other.key", &other.key_pem),
    );
    let cases = [
        (
            "messenger-server",
            "MESSENGER_TLS_CERT",
            "MESSENGER_TLS_KEY",
            None,
        ),
        (
            "messenger-client",
            "MESSENGER_CLIENT_CERT",
            "MESSENGER_CLIENT_KEY",
            None,
        ),
        (
            "messenger-server",
            "MESSENGER_BROKER_CERT",
            "MESSENGER_BROKER_KEY",
            Some("rediss://127.0.0.1:1"),
        ),
    ];
    for (bin, cert_var, key_var, broker) in cases {
        let mut env = vec![(cert_var, cert.as_str()), (key_var, key.as_str())];
        env.extend(broker.map(|url| ("MESSENGER_BROKER_URL", url)));
        let e = usage_error(bin, &env);
        assert!(
            e.contains("is not the private key of the certificate")
                && [cert_var, key_var, &cert, &key]
                    .iter()
                    .all(|s| e.contains(s)),
            "{bin}: {e}"
        );
    }

    // The two-step `openssl x509 -req` recipe without an extensions file
    // issues an X.509 v1 certificate, which rustls cannot use anywhere (found
    // by review: the error blamed the key). The certificate is named, with
    // the fix.
    let (_, v1, v1_key) = openssl_v1_client(dir.path());
    let (v1, v1_key) = (path(&v1), path(&v1_key));
    for (bin, cert_var, key_var, broker) in cases {
        let mut env = vec![(cert_var, v1.as_str()), (key_var, v1_key.as_str())];
        env.extend(broker.map(|url| ("MESSENGER_BROKER_URL", url)));
        let e = usage_error(bin, &env);
        assert!(
            e.contains(cert_var)
                && e.contains(&v1)
                && e.contains("X.509 v1")
                && !e.contains(key_var),
            "{bin}: {e}"
        );
    }
}
