//! Child processes for the suite: the release server and client, the OTLP
//! sink and the bench runs themselves. Output is pumped line by line on a
//! thread (so a chatty child never blocks on a full pipe) and kept, so a
//! start-up line like `grpc_addr=IP:PORT` can be waited for, bounded by
//! [`WAIT`]. Children are stopped with SIGTERM and killed on drop. A
//! measuring child ([`child`]) reports through its `--json` file and is
//! killed if it outlives its limit.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for a start-up line or an exit after SIGTERM.
const WAIT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    open_pipes: usize,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// A running child; killed when dropped.
pub(crate) struct Proc {
    name: String,
    child: Child,
    output: Shared,
}

impl Proc {
    /// Spawns `bin` with `args`, `NO_COLOR=1`, `RUST_LOG=info` and `env`;
    /// inherited `OTEL_*` and `MESSENGER_*` variables are removed.
    pub(crate) fn spawn(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("OTEL_") || k.starts_with("MESSENGER_") {
                command.env_remove(&key);
            }
        }
        let mut child = command
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let output: Shared = Arc::new((
            Mutex::new(Output {
                lines: Vec::new(),
                open_pipes: 2,
            }),
            Condvar::new(),
        ));
        pump(child.stdout.take().expect("piped stdout"), output.clone());
        pump(child.stderr.take().expect("piped stderr"), output.clone());
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `key=VALUE` in the output; returns VALUE.
    pub(crate) fn wait_value(&self, key: &str) -> Result<String, String> {
        self.wait_line(&format!("`{key}=`"), |l| value_of(l, key))
    }

    /// Waits for the first output line that `find` maps to `Some`, at most
    /// [`WAIT`]; `what` names it in the error.
    pub(crate) fn wait_line(
        &self,
        what: &str,
        find: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + WAIT;
        let mut out = lock
            .lock()
            .expect("pump threads never panic holding the lock");
        loop {
            if let Some(v) = out.lines.iter().find_map(|l| find(l)) {
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || out.open_pipes == 0 {
                let tail = out
                    .lines
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>();
                return Err(format!(
                    "{}: no {what} in its output\n{}",
                    self.name,
                    tail.join("\n")
                ));
            }
            out = changed
                .wait_timeout(out, left)
                .expect("lock not poisoned")
                .0;
        }
    }

    /// Waits for `key=IP:PORT`.
    pub(crate) fn wait_addr(&self, key: &str) -> Result<SocketAddr, String> {
        let value = self.wait_value(key)?;
        value
            .parse()
            .map_err(|e| format!("{}: {key}={value}: {e}", self.name))
    }

    /// SIGTERM, then up to [`WAIT`] for the exit; SIGKILL after that.
    /// Returns the exit status, or `None` if it had to be killed.
    pub(crate) fn stop(mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) has no memory effects; the child is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM for {WAIT:?}; killing it", self.name);
        None
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _killed = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}

fn pump(pipe: impl Read + Send + 'static, output: Shared) {
    std::thread::spawn(move || {
        let (lock, changed) = &*output;
        for bytes in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            lock.lock().expect("lock not poisoned").lines.push(line);
            changed.notify_all();
        }
        lock.lock().expect("lock not poisoned").open_pipes -= 1;
        changed.notify_all();
    });
}

/// Runs `bin` with `args` plus `--json out/name.json`, killed after `limit`;
/// the JSON it wrote, or `{"error": ...}`.
pub(crate) fn child(bin: &Path, out: &Path, name: &str, args: &[&str], limit: Duration) -> Value {
    let json_path = out.join(format!("{name}.json"));
    let _stale = std::fs::remove_file(&json_path);
    let shown = bin.file_name().unwrap_or_default().to_string_lossy();
    eprintln!("--- {name}: {shown} {}", args.join(" "));
    let child = Command::new(bin)
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .spawn();
    match child
        .map_err(|e| e.to_string())
        .and_then(|c| wait_bounded(c, limit))
    {
        Ok(s) if s.success() => std::fs::read_to_string(&json_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| json!({ "error": format!("{}: {e}", json_path.display()) })),
        Ok(s) => json!({ "error": format!("{shown} {} exited with {s}", args[0]) }),
        Err(e) => json!({ "error": format!("{shown} {}: {e}", args[0]) }),
    }
}

/// Waits for a bench child at most `limit`, then kills it. Its own phases
/// are bounded; this only guards the suite against a bug in them.
fn wait_bounded(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _receiver_gone = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => status.map_err(|e| e.to_string()),
        Err(_) => {
            // SAFETY: kill(2) has no memory effects; the child is not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            Err(format!("killed after {limit:?}"))
        }
    }
}

/// `VALUE` of `key=VALUE` in a text log line (quotes trimmed), else `None`.
pub(crate) fn value_of(line: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=");
    let at = line.match_indices(&pattern).find(|(i, _)| {
        *i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric() && line.as_bytes()[i - 1] != b'_'
    })?;
    let rest = line[at.0 + pattern.len()..].trim_start_matches('"');
    let value: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::value_of;

    #[test]
    fn finds_values_in_log_lines() {
        let line =
            "INFO app: messenger-server listening grpc_addr=127.0.0.1:5 metrics_addr=127.0.0.1:6";
        assert_eq!(value_of(line, "grpc_addr").as_deref(), Some("127.0.0.1:5"));
        assert_eq!(
            value_of(line, "metrics_addr").as_deref(),
            Some("127.0.0.1:6")
        );
        assert_eq!(value_of("x_grpc_addr=1", "grpc_addr"), None);
        assert_eq!(
            value_of("otlp_addr=\"1.2.3.4:5\"", "otlp_addr").as_deref(),
            Some("1.2.3.4:5")
        );
    }
}
