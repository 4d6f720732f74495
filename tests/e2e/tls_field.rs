//! TLS as people set it up: the self-signed certificate of the common
//! `openssl req -x509` one-liner (CA:TRUE) works as the server's certificate
//! and the client's CA at once, through every TLS client we have; the same
//! one-liner without `-addext subjectAltName` is refused naming the fix; and
//! files that cannot work (a key of another certificate, an X.509 v1
//! certificate) are usage errors at start. Refusals at connection time:
//! `tls_refused`.

use messenger_runtime::tls::ClientTlsFiles;
use messenger_tests::certs::{Ca, openssl_self_signed, openssl_v1_client};
use messenger_tests::procs::binary;
use messenger_tests::*;
use std::path::{Path, PathBuf};

pub(crate) fn path(p: &Path) -> String {
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
    let tls = |c: &mut messenger_client::Config| c.tls.ca = Some(cert.clone());
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
    let probe = run_healthcheck(
        server.addr.port(),
        &cert,
        &key,
        &[("MESSENGER_SERVER_CA", &cert)],
    )
    .await;
    assert_eq!(probe.status.code(), Some(0), "{probe:?}");

    client1.stop().await;
    client2.stop().await;
    server.stop().await.unwrap();
}

/// `messenger-server healthcheck` as the image runs it: the server's own
/// `MESSENGER_TLS_CERT`/`_KEY`, and `client` (`MESSENGER_SERVER_CA`, maybe
/// `MESSENGER_CLIENT_CERT`/`_KEY`).
pub(crate) async fn run_healthcheck(
    port: u16,
    cert: &Path,
    key: &Path,
    client: &[(&str, &Path)],
) -> std::process::Output {
    let mut command = std::process::Command::new(binary("messenger-server"));
    command
        .arg("healthcheck")
        .env_clear()
        .env("MESSENGER_SERVER_HOST", "127.0.0.1")
        .env("MESSENGER_SERVER_PORT", port.to_string())
        .env("MESSENGER_TLS_CERT", cert)
        .env("MESSENGER_TLS_KEY", key)
        .envs(client.iter().copied());
    let run = tokio::task::spawn_blocking(move || command.output().expect("run healthcheck"));
    within("healthcheck exits", run).await.unwrap()
}

/// A server certificate/key pair written to `dir`.
pub(crate) fn server_files(dir: &Path, leaf: &messenger_tests::certs::Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (cert, key)
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
