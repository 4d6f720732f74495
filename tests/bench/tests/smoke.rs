//! CI smoke test: each `messenger-bench` subcommand for about two seconds
//! against the real release binaries. Asserts the report's fields and that
//! no message was lost, duplicated or reordered; asserts no timings. Also:
//! every scenario ends by itself, naming the failed phase, against a server
//! that never answers; usage errors exit 2 with one line.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_messenger-bench");

/// A workspace binary next to messenger-bench.
fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(BENCH).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

/// A child killed on drop, with the value of its first `key=` log line.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _killed = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn spawn(bin: &str, env: &[(&str, &str)], key: &str) -> (Spawned, String) {
    let mut child = Command::new(binary(bin))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Spawned(child);
    let (tx, rx) = mpsc::channel();
    let pattern = format!("{key}=");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find(&pattern) {
                let value: String = line[at + pattern.len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _receiver_gone = tx.send(value);
            }
        }
    });
    let value = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("{bin} never logged {key}="));
    (child, value)
}

fn server() -> (Spawned, String) {
    let env = [
        ("MESSENGER_SERVER_HOST", "127.0.0.1"),
        ("MESSENGER_SERVER_PORT", "0"),
        ("MESSENGER_METRICS_PORT", "0"),
    ];
    spawn("messenger-server", &env, "grpc_addr")
}

/// Runs messenger-bench with `args` plus `--json`; returns the report.
fn bench(args: &[&str]) -> Value {
    let dir = std::env::temp_dir().join(format!("messenger-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join(format!("{}.json", args[0]));
    let out = Command::new(BENCH)
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run messenger-bench");
    assert!(
        out.status.success(),
        "messenger-bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&json).expect("report JSON written");
    serde_json::from_str(&text).expect("report is JSON")
}

fn assert_fields(report: &Value, fields: &[&str]) {
    for field in fields {
        assert!(
            report.pointer(field).is_some(),
            "{field} missing in {report:#}"
        );
    }
}

#[test]
fn fanout_reports_every_field_and_no_loss() {
    let (server, addr) = server();
    let pid = server.0.id().to_string();
    let report = bench(&[
        "fanout",
        "--server",
        &addr,
        "--subscribers",
        "4",
        "--publishers",
        "2",
        "--duration",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_fields(
        &report,
        &[
            "/accepted_per_sec",
            "/deliveries_per_sec",
            "/delivery_latency_ms/p50",
            "/delivery_latency_ms/p90",
            "/delivery_latency_ms/p99",
            "/delivery_latency_ms/p999",
            "/delivery_latency_ms/max",
            "/send_latency_ms/p50",
            "/send_latency_ms/p99",
            "/lost",
            "/duplicated",
            "/reordered",
            "/disconnected_subscribers",
            "/bench_cpu_seconds",
            "/server_cpu_seconds",
            "/server_peak_rss_bytes",
            "/subscribers",
            "/publishers",
        ],
    );
    assert!(report["accepted"].as_u64().unwrap() > 0, "{report:#}");
    for zero in [
        "lost",
        "duplicated",
        "reordered",
        "disconnected_subscribers",
    ] {
        assert_eq!(report[zero], 0, "{zero} in {report:#}");
    }
}

#[test]
fn idle_reports_memory_per_subscriber() {
    let (server, addr) = server();
    let pid = server.0.id().to_string();
    let report = bench(&[
        "idle",
        "--server",
        &addr,
        "--subscribers",
        "50",
        "--server-pid",
        &pid,
    ]);
    assert_fields(
        &report,
        &[
            "/bytes_per_subscriber",
            "/server_rss_before_bytes",
            "/server_rss_after_bytes",
            "/subscribers",
            "/connections",
        ],
    );
}

#[test]
fn http_reports_rate_and_latency() {
    let (_server, addr) = server();
    let env = [
        ("MESSENGER_SERVER_ADDR", addr.as_str()),
        ("MESSENGER_HTTP_HOST", "127.0.0.1"),
        ("MESSENGER_HTTP_PORT", "0"),
    ];
    let (_client, http) = spawn("messenger-client", &env, "http_addr");
    let report = bench(&[
        "http",
        "--client",
        &http,
        "--connections",
        "2",
        "--duration",
        "2",
    ]);
    assert_fields(
        &report,
        &[
            "/requests_per_sec",
            "/latency_ms/p50",
            "/latency_ms/p99",
            "/latency_ms/max",
            "/errors",
            "/bench_cpu_seconds",
        ],
    );
    assert!(report["requests"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
}

/// Runs messenger-bench with `args` to its end, at most `limit`; (exit code,
/// stderr). A run still going at `limit` is killed and fails the test.
fn bench_exit(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let child = Command::new(BENCH)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run messenger-bench");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _receiver_gone = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.expect("wait for messenger-bench");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _killed = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("messenger-bench {args:?} still running after {limit:?}: a phase is unbounded");
        }
    }
}

/// Every scenario against a TCP listener that accepts connections and never
/// answers: each ends by itself with a non-zero exit and one stderr line
/// naming the phase that failed.
#[test]
fn every_scenario_fails_fast_against_a_server_that_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    std::thread::spawn(move || {
        // Hold every connection open, unread, until the test process ends.
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let pid = std::process::id().to_string();
    let runs: [&[&str]; 3] = [
        &[
            "fanout",
            "--server",
            &addr,
            "--subscribers",
            "2",
            "--duration",
            "1",
        ],
        &[
            "idle",
            "--server",
            &addr,
            "--subscribers",
            "2",
            "--server-pid",
            &pid,
        ],
        &[
            "http",
            "--client",
            &addr,
            "--connections",
            "2",
            "--duration",
            "1",
        ],
    ];
    let limit = Duration::from_secs(90);
    let handles: Vec<_> = runs
        .iter()
        .map(|args| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (args[0].to_owned(), bench_exit(&args, limit))
            })
        })
        .collect();
    for handle in handles {
        let (name, (code, stderr)) = handle.join().expect("run thread");
        assert_eq!(code, Some(1), "{name}: exit code; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one stderr line, got {stderr:?}");
        assert!(
            lines[0].starts_with("messenger-bench: phase '"),
            "{name}: names the phase: {stderr:?}"
        );
    }
}

/// Usage errors: exit code 2 and one line; `--help` exits 0 with the flags.
#[test]
fn usage_errors_exit_2_with_one_line_and_help_exits_0() {
    let limit = Duration::from_secs(30);
    for args in [
        &["fanout"][..],
        &["fanout", "--server", "127.0.0.1:1", "--subscribers", "many"],
        &["frobnicate"],
    ] {
        let (code, stderr) = bench_exit(args, limit);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    }
    let out = Command::new(BENCH)
        .args(["fanout", "--help"])
        .output()
        .expect("run messenger-bench");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--server",
        "--subscribers",
        "--publishers",
        "--rate",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}
