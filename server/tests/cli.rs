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
