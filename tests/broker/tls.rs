//! `rediss://` with a private CA (`MESSENGER_BROKER_CA`) and with a client
//! certificate (`MESSENGER_BROKER_CERT`/`_KEY`): messages flow over TLS; a
//! replica that does not trust the broker's certificate, or has none to show
//! a broker that asks, never talks to it, answering UNAVAILABLE naming the
//! broker. Unusable TLS files are usage errors at start.

use crate::{HEAVY, replica};
use messenger_tests::certs::{Ca, SAN_LOCALHOST, req_x509};
use messenger_tests::redis::RedisProc;
use messenger_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("broker test CA");
    let leaf = ca.server(&["127.0.0.1"]);
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (cert, key) = (
        write("redis.pem", &leaf.cert_pem),
        write("redis.key", &leaf.key_pem),
    );
    let ca_file = write("ca.pem", ca.pem());
    let redis = RedisProc::start_tls(&cert, &key, None).await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);

    let ca_path = ca_file.to_str().unwrap();
    let trusted = replica("trusted", &url, &[("MESSENGER_BROKER_CA", ca_path)]).await;
    let mut stream = trusted.subscribe().await;
    let mut grpc = trusted.grpc().await;
    let sent = grpc_send(&mut grpc, "ann", "over TLS")
        .await
        .expect("send over TLS");
    let got = read_n(&mut stream, 1).await;
    assert_eq!(
        (got[0].text.as_str(), got[0].send_time.as_str()),
        ("over TLS", sent.as_str())
    );

    let untrusted = replica("untrusted", &url, &[]).await;
    // The reader's first failure is logged with its reason, not only the
    // sends' errors (a field report: the start-up WARN said no why).
    let why = "the start-up failure, with its reason";
    (untrusted.proc)
        .wait_line(why, |l| {
            l.text.contains("broker unreachable") && l.text.contains("UnknownIssuer")
        })
        .await;
    let mut grpc = untrusted.grpc().await;
    let refused = grpc_send(&mut grpc, "ann", "not trusted")
        .await
        .expect_err("an unknown CA is not trusted");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().starts_with(&format!("broker {url}")),
        "{refused:?}"
    );
    println!("rediss: a message over TLS with MESSENGER_BROKER_CA; without it: {refused:?}");
}

/// Redis as its TLS docs set it up: `tls-auth-clients` left at its default
/// (yes), so the broker asks every client for a certificate signed by its CA.
/// A replica with `MESSENGER_BROKER_CERT`/`_KEY` publishes and delivers; one
/// without is refused by the broker, answering UNAVAILABLE naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_asking_for_a_client_certificate() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("broker mTLS CA");
    let (server, client) = (ca.server(&["127.0.0.1"]), ca.client("messenger-server"));
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ca_file = write("ca.pem", ca.pem());
    let (cert, key) = (
        write("redis.pem", &server.cert_pem),
        write("redis.key", &server.key_pem),
    );
    let redis = RedisProc::start_tls(cert.as_ref(), key.as_ref(), Some(ca_file.as_ref())).await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let (client_cert, client_key) = (
        write("client.pem", &client.cert_pem),
        write("client.key", &client.key_pem),
    );

    let with_cert = [
        ("MESSENGER_BROKER_CA", ca_file.as_str()),
        ("MESSENGER_BROKER_CERT", client_cert.as_str()),
        ("MESSENGER_BROKER_KEY", client_key.as_str()),
    ];
    let accepted = replica("with-cert", &url, &with_cert).await;
    let mut stream = accepted.subscribe().await;
    let mut grpc = accepted.grpc().await;
    let sent = grpc_send(&mut grpc, "ann", "over mTLS")
        .await
        .expect("send with a client certificate");
    let got = read_n(&mut stream, 1).await;
    assert_eq!(
        (got[0].text.as_str(), got[0].send_time.as_str()),
        ("over mTLS", sent.as_str())
    );

    let without = replica("without-cert", &url, &with_cert[..1]).await;
    let mut grpc = without.grpc().await;
    let refused = grpc_send(&mut grpc, "ann", "no certificate")
        .await
        .expect_err("the broker asks for a client certificate");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().starts_with(&format!("broker {url}")),
        "{refused:?}"
    );
    println!("rediss with client auth: a message with MESSENGER_BROKER_CERT; without: {refused:?}");
}

/// A TLS file that cannot be used, half a cert/key pair, or TLS files for a
/// plaintext broker or for no broker at all (they would be ignored): a
/// usage error (exit 2) in one line naming the variable.
/// (A key of another certificate: `e2e::tls_field`.)
#[test]
fn unusable_broker_tls_files_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (tls, plain) = ("rediss://127.0.0.1:1", "redis://127.0.0.1:1");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 6] = [
        (
            tls,
            &[("MESSENGER_BROKER_CA", missing)],
            &["MESSENGER_BROKER_CA", "No such file"],
        ),
        (
            tls,
            &[("MESSENGER_BROKER_CA", junk)],
            &["MESSENGER_BROKER_CA", "PEM"],
        ),
        (
            plain,
            &[("MESSENGER_BROKER_CA", junk)],
            &["MESSENGER_BROKER_CA", "rediss://"],
        ),
        (
            tls,
            &[("MESSENGER_BROKER_CERT", junk)],
            &["MESSENGER_BROKER_KEY", "set both"],
        ),
        (
            plain,
            &[
                ("MESSENGER_BROKER_CERT", junk),
                ("MESSENGER_BROKER_KEY", junk),
            ],
            &["MESSENGER_BROKER_CERT", "rediss://"],
        ),
        (
            tls,
            &[
                ("MESSENGER_BROKER_CERT", junk),
                ("MESSENGER_BROKER_KEY", missing),
            ],
            &["MESSENGER_BROKER_CERT", "no PEM certificate"],
        ),
    ];
    let no_broker = [
        ("MESSENGER_BROKER_CA", junk),
        ("MESSENGER_BROKER_CERT", junk),
        ("MESSENGER_BROKER_KEY", junk),
    ];
    let ignored: Vec<Case<'_>> = no_broker
        .iter()
        .map(|file| {
            (
                "",
                std::slice::from_ref(file),
                &["MESSENGER_BROKER_URL is not"][..],
            )
        })
        .collect();
    for (url, files, want) in cases.into_iter().chain(ignored) {
        let mut command =
            std::process::Command::new(messenger_tests::procs::binary("messenger-server"));
        match url {
            "" => command.env_remove("MESSENGER_BROKER_URL"),
            url => command.env("MESSENGER_BROKER_URL", url),
        };
        let out = command
            .envs(files.iter().copied())
            .env("MESSENGER_SERVER_PORT", "0")
            .env("MESSENGER_METRICS_PORT", "0")
            .env("MESSENGER_SERVER_HOST", "127.0.0.1")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url} {files:?}: {stderr}");
        let line = stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{stderr}");
        assert!(want.iter().all(|w| line.contains(w)), "{files:?}: {line}");
    }
}

/// The broker's certificate as people make it: the `openssl req -x509`
/// one-liner, given to Redis as `tls-cert-file` and to the replica as
/// `MESSENGER_BROKER_CA`. As it comes (CA:TRUE), with or without a
/// subjectAltName, the replica cannot use it (webpki refuses a CA as the
/// server's own certificate, and the Redis client takes no pinning
/// verifier), and the answer says which variable and exactly how to
/// re-issue it; re-issued as server/README.md's one-liner says (CA:FALSE, the
/// host in subjectAltName), messages flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_openssl_one_liner_certificate() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let leaf = "basicConstraints=critical,CA:FALSE";
    // (file stem, -addext, what the refusal says; None: it works)
    type Case<'a> = (&'a str, &'a [&'a str], Option<&'a [&'a str]>);
    let cases: [Case<'_>; 4] = [
        (
            "one-liner",
            &[SAN_LOCALHOST],
            Some(&["MESSENGER_BROKER_CA", "CA certificate", leaf]),
        ),
        (
            "one-liner-no-san",
            &[],
            Some(&[
                "MESSENGER_BROKER_CA",
                "CA certificate",
                leaf,
                "subjectAltName",
            ]),
        ),
        (
            "leaf-no-san",
            &[leaf],
            Some(&[
                "tls-cert-file",
                "without a subjectAltName",
                "subjectAltName=IP:127.0.0.1",
            ]),
        ),
        ("readme", &[SAN_LOCALHOST, leaf], None),
    ];
    for (stem, addext, refused) in cases {
        let (cert, key) = req_x509(dir.path(), stem, addext);
        let redis = RedisProc::start_tls(&cert, &key, None).await;
        let url = format!("rediss://127.0.0.1:{}", redis.port);
        let ca = cert.to_str().unwrap();
        let replica = replica(stem, &url, &[("MESSENGER_BROKER_CA", ca)]).await;
        let mut grpc = replica.grpc().await;
        let sent = grpc_send(&mut grpc, "ann", stem).await;
        match refused {
            None => {
                let mut stream = replica.subscribe().await;
                let sent = grpc_send(&mut grpc, "ann", "again").await.expect(stem);
                let got = read_n(&mut stream, 1).await;
                assert_eq!(got[0].send_time, sent, "{stem}");
            }
            Some(said) => {
                let refused = sent.expect_err(stem);
                assert_eq!(refused.code(), Code::Unavailable, "{stem}: {refused:?}");
                let message = refused.message();
                assert!(
                    said.iter().all(|s| message.contains(s)),
                    "{stem}: expected {said:?} in {message}"
                );
                assert!(
                    message.ends_with("until the TLS setting above is fixed"),
                    "{stem}: not 'retry with backoff' for a file to fix: {message}"
                );
                println!("rediss with the {stem} certificate: {message}");
            }
        }
        replica.proc.sigterm_and_wait().await;
    }
}
