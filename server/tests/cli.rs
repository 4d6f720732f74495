//! The real `messenger-server` binary: flags and env documented, invalid
//! configuration rejected with one line and exit code 2, SIGTERM exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_messenger-server");

#[test]
fn help_documents_every_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "MESSENGER_SERVER_HOST",
        "MESSENGER_SERVER_PORT",
        "MESSENGER_SUBSCRIBER_QUEUE",
        "MESSENGER_MAX_TEXT_BYTES",
        "MESSENGER_MAX_AUTHOR_BYTES",
        "MESSENGER_SHUTDOWN_GRACE_SECS",
        "MESSENGER_LOG_FORMAT",
        "MESSENGER_BROKER_URL",
        "MESSENGER_BROKER_STREAM",
        "MESSENGER_BROKER_CA",
        "MESSENGER_BROKER_TIMEOUT_MS",
    ] {
        assert!(help.contains(var), "--help lacks {var}:\n{help}");
    }
}

#[test]
fn invalid_values_exit_2_with_one_line() {
    for (var, value) in [
        ("MESSENGER_SERVER_PORT", "http"),
        ("MESSENGER_SUBSCRIBER_QUEUE", "0"),
        ("MESSENGER_LOG_FORMAT", "xml"),
        ("MESSENGER_BROKER_URL", "localhost:6379"),
        ("MESSENGER_BROKER_TIMEOUT_MS", "0"),
    ] {
        let out = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{var}={value}: {stderr}"
        );
        assert!(stderr.contains(value), "{stderr}");
    }
}

#[test]
fn sigterm_exits_zero() {
    let mut child = Command::new(BIN)
        .env("MESSENGER_SERVER_HOST", "127.0.0.1")
        .env("MESSENGER_SERVER_PORT", "0")
        .env("MESSENGER_METRICS_PORT", "0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = rx.iter().find(|l| l.contains("grpc_addr="));
    assert!(listening.is_some(), "server never logged its address");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("exited within 10 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stopped = rx.iter().any(|l| l.contains("messenger-server stopped"));
    assert!(stopped, "shutdown was logged");
}

/// Runs the server with `env` (and a free port), expecting a usage error:
/// exit 2 and one line of stderr, which is returned.
fn usage_error(env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .env("MESSENGER_SERVER_HOST", "127.0.0.1")
        .env("MESSENGER_SERVER_PORT", "0")
        .env("MESSENGER_METRICS_PORT", "0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{env:?}: {stderr}");
    stderr
}

#[test]
fn tls_and_token_file_errors_exit_2_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("messenger-server-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let missing = "/nonexistent/server.key";

    let e = usage_error(&[("MESSENGER_TLS_CERT", not_pem)]);
    assert!(e.contains("MESSENGER_TLS_KEY"), "{e}");
    let e = usage_error(&[("MESSENGER_TLS_KEY", missing)]);
    assert!(e.contains("MESSENGER_TLS_CERT"), "{e}");
    let e = usage_error(&[("MESSENGER_TLS_CLIENT_CA", not_pem)]);
    assert!(e.contains("MESSENGER_TLS_CERT"), "{e}");
    let e = usage_error(&[
        ("MESSENGER_TLS_CERT", not_pem),
        ("MESSENGER_TLS_KEY", missing),
    ]);
    assert!(
        e.contains(not_pem) && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = usage_error(&[("MESSENGER_AUTH_TOKENS_FILE", missing)]);
    assert!(e.contains(missing), "{e}");
    let e = usage_error(&[("MESSENGER_AUTH_TOKENS_FILE", not_pem)]);
    assert!(e.contains("line 1") && !e.contains("hello"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_documents_the_security_variables() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "MESSENGER_TLS_CERT",
        "MESSENGER_TLS_KEY",
        "MESSENGER_TLS_CLIENT_CA",
        "MESSENGER_AUTH_TOKENS_FILE",
    ] {
        assert!(help.contains(var), "--help lacks {var}:\n{help}");
    }
}

/// clap quotes an invalid value whole; a broker URL's password must not
/// reach stderr (found by review).
#[test]
fn an_invalid_broker_url_never_shows_its_password() {
    for url in [
        "redis://:s3cr3tPW@127.0.0.1:99999",
        "rediss://admin:s3cr3tPW@127.0.0.1:99999/x",
    ] {
        let e = usage_error(&[("MESSENGER_BROKER_URL", url)]);
        assert!(
            !e.contains("s3cr3tPW") && e.contains("***@127.0.0.1:99999"),
            "{e}"
        );
    }
}
