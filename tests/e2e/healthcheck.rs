//! The `healthcheck` subcommands that the container images use as their
//! `HEALTHCHECK`: exit 0 against a live, ready process, exit 1 against a
//! closed port, each within a bounded time.

use messenger_tests::procs::{binary, spawn_client, spawn_server};
use messenger_tests::within;
use std::net::TcpListener;
use std::process::{Command, Output};

/// Runs `bin healthcheck` with only `env` from the MESSENGER_* family.
async fn healthcheck(bin: &str, env: &[(&str, String)]) -> Output {
    let mut command = Command::new(binary(bin));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESSENGER_") {
            command.env_remove(&key);
        }
    }
    command
        .arg("healthcheck")
        .envs(env.iter().map(|(k, v)| (*k, v)));
    let run = tokio::task::spawn_blocking(move || command.output().expect("run healthcheck"));
    within("healthcheck exits", run).await.expect("join")
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

fn report(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn server_healthcheck_is_0_when_serving_and_1_on_a_closed_port() {
    let server = spawn_server(&[]).await;
    let env = |port: String| {
        [
            ("MESSENGER_SERVER_HOST", "127.0.0.1".to_owned()),
            ("MESSENGER_SERVER_PORT", port),
        ]
    };

    let live = healthcheck(
        "messenger-server",
        &env(server.grpc_addr.port().to_string()),
    )
    .await;
    assert_eq!(live.status.code(), Some(0), "{}", report(&live));
    assert!(String::from_utf8_lossy(&live.stdout).contains("SERVING"));

    let closed = healthcheck("messenger-server", &env(closed_port())).await;
    assert_eq!(closed.status.code(), Some(1), "{}", report(&closed));
    assert!(String::from_utf8_lossy(&closed.stderr).contains("unhealthy"));

    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}

#[tokio::test]
async fn client_healthcheck_is_0_when_ready_and_1_on_a_closed_port() {
    let server = spawn_server(&[]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let env = |port: String| {
        [
            ("MESSENGER_HTTP_HOST", "127.0.0.1".to_owned()),
            ("MESSENGER_HTTP_PORT", port),
        ]
    };

    let live = healthcheck(
        "messenger-client",
        &env(client.http_addr.port().to_string()),
    )
    .await;
    assert_eq!(live.status.code(), Some(0), "{}", report(&live));

    let closed = healthcheck("messenger-client", &env(closed_port())).await;
    assert_eq!(closed.status.code(), Some(1), "{}", report(&closed));
    let said = String::from_utf8_lossy(&closed.stderr);
    // The port opens once subscribed (proto/CONTRACT.md): the probe says so.
    assert!(
        said.contains("unhealthy") && said.contains("only once subscribed"),
        "{said}"
    );

    assert_eq!(client.proc.sigterm_and_wait().await, Some(0));
    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}

#[tokio::test]
async fn server_healthcheck_speaks_mtls_to_a_tls_server() {
    let pki = messenger_tests::certs::TestPki::generate();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let server = spawn_server(&[
        ("MESSENGER_TLS_CERT", &path(&pki.server_cert)),
        ("MESSENGER_TLS_KEY", &path(&pki.server_key)),
        ("MESSENGER_TLS_CLIENT_CA", &path(&pki.ca)),
    ])
    .await;
    let base = vec![
        ("MESSENGER_SERVER_HOST", "127.0.0.1".to_owned()),
        ("MESSENGER_SERVER_PORT", server.grpc_addr.port().to_string()),
        ("MESSENGER_TLS_CERT", path(&pki.server_cert)),
        ("MESSENGER_TLS_KEY", path(&pki.server_key)),
        ("MESSENGER_TLS_CLIENT_CA", path(&pki.ca)),
        ("MESSENGER_SERVER_CA", path(&pki.ca)),
    ];
    let with_identity = [
        base.clone(),
        vec![
            ("MESSENGER_CLIENT_CERT", path(&pki.client_cert)),
            ("MESSENGER_CLIENT_KEY", path(&pki.client_key)),
        ],
    ]
    .concat();

    let live = healthcheck("messenger-server", &with_identity).await;
    assert_eq!(live.status.code(), Some(0), "{}", report(&live));

    // No client certificate: the mTLS handshake fails, so the probe does too.
    let anonymous = healthcheck("messenger-server", &base).await;
    assert_eq!(anonymous.status.code(), Some(1), "{}", report(&anonymous));

    // Trusting another CA: the server's certificate is refused.
    let mut wrong_ca = with_identity.clone();
    wrong_ca[5].1 = path(&pki.other_ca);
    let refused = healthcheck("messenger-server", &wrong_ca).await;
    assert_eq!(refused.status.code(), Some(1), "{}", report(&refused));

    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}

/// `MESSENGER_SERVER_CA` alone (as `--server-ca`'s help says) makes the probe
/// speak TLS: it was a plaintext probe of a TLS port, failing with an h2
/// frame error, unless the server's own certificate was also set.
#[tokio::test]
async fn server_healthcheck_with_only_a_ca_speaks_tls() {
    let pki = messenger_tests::certs::TestPki::generate();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let server = spawn_server(&[
        ("MESSENGER_TLS_CERT", &path(&pki.server_cert)),
        ("MESSENGER_TLS_KEY", &path(&pki.server_key)),
    ])
    .await;
    let env = [
        ("MESSENGER_SERVER_HOST", "127.0.0.1".to_owned()),
        ("MESSENGER_SERVER_PORT", server.grpc_addr.port().to_string()),
        ("MESSENGER_SERVER_CA", path(&pki.ca)),
    ];
    let live = healthcheck("messenger-server", &env).await;
    assert_eq!(live.status.code(), Some(0), "{}", report(&live));
    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}
