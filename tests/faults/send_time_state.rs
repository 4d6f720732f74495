//! sendTime keeps increasing across a restart on a clock that is behind
//! (issue 26, item 3): the server restarts with its clock an hour behind
//! (libfaketime, preloaded into the server process only), by more than the
//! downtime, and its first stamp is still later than the last one of the
//! run before, after SIGTERM and after kill -9, with `MESSENGER_STATE_DIR`.
//! Without it the stamp goes back an hour: the control that proves the
//! clock really was behind.

use crate::HEAVY;
use messenger_tests::procs::{ServerProc, spawn_server};
use messenger_tests::*;
use std::path::PathBuf;

const BEHIND: &str = "-1h";

/// libfaketime's preload library (Debian `libfaketime`, `make test-tools`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    found.expect("libfaketime is missing: run `make test-tools` (Debian package libfaketime)")
}

async fn send(server: &ServerProc) -> String {
    grpc_send(&mut server.grpc().await, "a", "stamp")
        .await
        .expect("send")
}

fn at(stamp: &str) -> chrono::DateTime<chrono::Utc> {
    stamp.parse().expect("RFC 3339 sendTime")
}

/// Sends on a server, stops it (`graceful`: SIGTERM, else kill -9), sends on
/// one started with the clock [`BEHIND`]; returns both stamps and the restart.
async fn restart_behind(state: &[(&str, &str)], graceful: bool) -> (String, String, ServerProc) {
    let server = spawn_server(state).await;
    let before = send(&server).await;
    if graceful {
        assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
    } else {
        server.proc.kill9_and_wait().await;
    }
    let preload = libfaketime();
    let mut env = state.to_vec();
    env.extend([
        ("LD_PRELOAD", preload.to_str().expect("UTF-8 path")),
        ("FAKETIME", BEHIND),
        // Timers and Instant keep the real monotonic clock.
        ("DONT_FAKE_MONOTONIC", "1"),
    ]);
    let behind = spawn_server(&env).await;
    let after = send(&behind).await;
    (before, after, behind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_time_keeps_increasing_across_a_restart_on_a_clock_an_hour_behind() {
    let _heavy = HEAVY.lock().await;
    for graceful in [true, false] {
        let how = if graceful { "SIGTERM" } else { "kill -9" };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        let state = [("MESSENGER_STATE_DIR", path.to_str().expect("UTF-8 path"))];
        let (before, after, behind) = restart_behind(&state, graceful).await;
        let ahead = at(&after) - at(&before);
        println!(
            "sendTime state: {how}, restart an hour behind: {before} then {after} (+{} ms)",
            ahead.num_milliseconds()
        );
        assert!(after > before, "{how}: {before} then {after}");
        // Graceful: the exact last stamp was kept. Crash: at most the mark's lead (2 s).
        let lead = if graceful { 1 } else { 2_500 };
        assert!(
            ahead < chrono::Duration::milliseconds(lead),
            "{how}: {before} then {after}"
        );
        behind
            .proc
            .wait_line("the clock-behind warning", |l| {
                l.text.contains("the clock is behind the sendTime mark")
            })
            .await;
    }
    let (before, after, plain) = restart_behind(&[], true).await;
    println!("sendTime state: no MESSENGER_STATE_DIR: {before} then {after}");
    assert!(
        at(&after) < at(&before) - chrono::Duration::minutes(59),
        "control: the restarted clock is an hour behind: {before} then {after}"
    );
    plain
        .proc
        .wait_line("the startup line saying what is not guaranteed", |l| {
            l.text.contains("MESSENGER_STATE_DIR is not set")
        })
        .await;
}
