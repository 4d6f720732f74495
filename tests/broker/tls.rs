//! `rediss://` with a private CA (`MESSENGER_BROKER_CA`): messages flow over
//! TLS; a replica that does not trust the broker's certificate never talks
//! to it, answering UNAVAILABLE naming the broker and reporting NOT_SERVING.

use crate::{HEAVY, replica};
use messenger_tests::certs::Ca;
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
    let redis = RedisProc::start_tls(&cert, &key).await;
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

/// A CA file that cannot be used, or a CA for a plaintext broker, is a
/// usage error (exit 2) in one line naming `MESSENGER_BROKER_CA`.
#[test]
fn an_unusable_broker_ca_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        ("rediss://127.0.0.1:1", missing.as_path(), "No such file"),
        ("rediss://127.0.0.1:1", junk.as_path(), "PEM"),
        ("redis://127.0.0.1:1", junk.as_path(), "rediss://"),
    ];
    for (url, ca, why) in cases {
        let out = std::process::Command::new(messenger_tests::procs::binary("messenger-server"))
            .env("MESSENGER_BROKER_URL", url)
            .env("MESSENGER_BROKER_CA", ca)
            .env("MESSENGER_SERVER_PORT", "0")
            .env("MESSENGER_METRICS_PORT", "0")
            .env("MESSENGER_SERVER_HOST", "127.0.0.1")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url} {ca:?}: {stderr}");
        let line = stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{stderr}");
        assert!(
            line.contains("MESSENGER_BROKER_CA") && line.contains(why),
            "{line}"
        );
    }
}
