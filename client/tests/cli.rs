//! The real `messenger-client` binary: flags and env documented, invalid
//! configuration rejected with one line and exit code 2.

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

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
        "MESSENGER_CLIENT_BUFFER_BYTES",
        "MESSENGER_SEND_TIMEOUT_MS",
        "MESSENGER_MAX_BODY_BYTES",
        "MESSENGER_RECONNECT_MAX_BACKOFF_MS",
        "MESSENGER_SHUTDOWN_GRACE_SECS",
        "MESSENGER_HTTP_TIMEOUT_MS",
        "MESSENGER_HTTP_MAX_CONCURRENCY",
        "MESSENGER_KEEPALIVE_INTERVAL_MS",
        "MESSENGER_KEEPALIVE_TIMEOUT_MS",
        "MESSENGER_LOG_FORMAT",
    ] {
        assert!(help.contains(var), "--help lacks {var}:\n{help}");
    }
}

/// A newcomer whose client never opens its port learns why from `--help`:
/// the port opens only once subscribed, and these are the routes it serves.
#[test]
fn help_says_when_the_port_opens_and_which_routes_it_serves() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("opens its HTTP port (MESSENGER_HTTP_PORT) only once subscribed"),
        "{help}"
    );
    for (method, path) in messenger_client::paths::ROUTES {
        assert!(
            flat.contains(&format!("{method} {path}")),
            "--help lacks {method} {path}:\n{help}"
        );
    }
}

#[test]
fn invalid_values_exit_2_with_one_line() {
    for (var, value) in [
        ("MESSENGER_SERVER_ADDR", "localhost"),
        ("MESSENGER_HTTP_PORT", "99999"),
        ("MESSENGER_CLIENT_BUFFER_LIMIT", "0"),
        ("MESSENGER_CLIENT_BUFFER_BYTES", "1000"),
        ("MESSENGER_HTTP_TIMEOUT_MS", "0"),
        ("MESSENGER_HTTP_MAX_CONCURRENCY", "0"),
        ("MESSENGER_KEEPALIVE_INTERVAL_MS", "5"),
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

/// Still waiting for an absent server, the client stops cleanly on SIGTERM.
#[test]
fn sigterm_while_waiting_for_the_server_exits_zero() {
    let mut child = Command::new(BIN)
        .env("MESSENGER_SERVER_ADDR", "127.0.0.1:9")
        .env("MESSENGER_HTTP_PORT", "0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It logs this before its first subscription attempt, after installing its signal handler.
    let stdout = child.stdout.take().unwrap();
    let waiting = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .any(|l| l.contains("subscribing before opening HTTP"));
    assert!(waiting, "client never logged that it is subscribing");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("exited within 10 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Runs the client with `env` against a server address nothing needs to
/// answer, expecting a usage error: exit 2 and one line of stderr, returned.
fn usage_error(env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .env("MESSENGER_SERVER_ADDR", "127.0.0.1:9")
        .env("MESSENGER_HTTP_HOST", "127.0.0.1")
        .env("MESSENGER_HTTP_PORT", "0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{env:?}: {stderr}");
    stderr
}

/// The TLS files and the token are read once, at start (not a second time
/// by a separate check first): a bad one is still a usage error before any
/// connection attempt, and the token never appears in it.
#[test]
fn tls_and_token_errors_exit_2_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("messenger-client-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let missing = "/nonexistent/client.key";

    let e = usage_error(&[("MESSENGER_SERVER_CA", not_pem)]);
    assert!(
        e.contains(not_pem) && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = usage_error(&[("MESSENGER_SERVER_CA", missing)]);
    assert!(e.contains(missing), "{e}");
    let e = usage_error(&[("MESSENGER_CLIENT_CERT", not_pem)]);
    assert!(e.contains("MESSENGER_CLIENT_KEY"), "{e}");
    let secret = "two words s3cret";
    let e = usage_error(&[("MESSENGER_CLIENT_TOKEN", secret)]);
    assert!(
        e.contains("MESSENGER_CLIENT_TOKEN") && !e.contains("s3cret"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
