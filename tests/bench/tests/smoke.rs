//! CI smoke test: each `messenger-bench` subcommand for about two seconds
//! against the real release binaries. Asserts the report's fields and that
//! no message was lost, duplicated or reordered; asserts no timings.

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
