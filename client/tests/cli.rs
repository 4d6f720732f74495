//! The real `messenger-client` binary: flags and env documented, invalid
//! configuration rejected with one line and exit code 2.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_messenger-client");

#[test]
fn help_documents_every_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "MESSENGER_SERVER_ADDR",
        "MESSENGER_HTTP_HOST",
        "MESSENGER_HTTP_PORT",
        "MESSENGER_CLIENT_BUFFER_LIMIT",
        "MESSENGER_SEND_TIMEOUT_MS",
        "MESSENGER_MAX_BODY_BYTES",
        "MESSENGER_RECONNECT_MAX_BACKOFF_MS",
        "MESSENGER_SHUTDOWN_GRACE_SECS",
        "MESSENGER_LOG_FORMAT",
    ] {
        assert!(help.contains(var), "--help lacks {var}:\n{help}");
    }
}

#[test]
fn invalid_values_exit_2_with_one_line() {
    for (var, value) in [
        ("MESSENGER_SERVER_ADDR", "localhost"),
        ("MESSENGER_HTTP_PORT", "99999"),
        ("MESSENGER_CLIENT_BUFFER_LIMIT", "0"),
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
