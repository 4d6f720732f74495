//! The real `messenger-server` and `messenger-client` binaries as child
//! processes, for the observability tests: spawned with an explicit
//! environment, stdout and stderr captured line by line on background threads,
//! listen addresses parsed from the start-up log (text or JSON), SIGTERM with
//! a bounded wait for the exit code, SIGKILL on drop.
//!
//! Every wait is an event (a line was read, the process exited) bounded by
//! [`WAIT`]; a wait also ends early, with the captured output, once the
//! process has exited and both pipes are closed.

use crate::{Msg, WAIT, within};
use messenger_proto::pb::ServerMessageResponse;
use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::sync::watch;
use tonic::Streaming;
use tonic::transport::Channel;

/// Which pipe a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// One captured output line.
#[derive(Debug, Clone)]
pub struct Line {
    pub pipe: Pipe,
    pub text: String,
}

impl Line {
    /// The timestamp that starts a text log line.
    pub fn logged_at(&self) -> chrono::DateTime<chrono::Utc> {
        let stamp = self.text.split_whitespace().next().unwrap_or_default();
        stamp
            .parse()
            .unwrap_or_else(|e| panic!("no timestamp ({e}) in {:?}", self.text))
    }

    /// The line parsed as a JSON object, if it is one.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str::<Value>(&self.text)
            .ok()
            .filter(Value::is_object)
    }
}

/// Everything a process has written so far, and whether it has ended.
#[derive(Debug)]
struct Output {
    lines: Vec<Line>,
    open_pipes: usize,
    exit: Option<ExitStatus>,
}

impl Output {
    /// Nothing more can arrive: the process was reaped and both pipes hit EOF.
    fn finished(&self) -> bool {
        self.exit.is_some() && self.open_pipes == 0
    }
}

/// A spawned binary. Killed with SIGKILL on drop unless it has exited.
pub struct Proc {
    name: String,
    pid: libc::pid_t,
    output: watch::Receiver<Output>,
}

/// Path of a workspace binary next to the test executable
/// (`target/<profile>/deps/e2e-*` -> `target/<profile>/<bin>`).
pub fn binary(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(bin);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

impl Proc {
    /// Spawns `bin` with `NO_COLOR=1`, `RUST_LOG=info` and then `env`; any
    /// `OTEL_*` or `MESSENGER_*` variable of the test's own environment is removed.
    pub fn spawn(name: &str, bin: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_with_nofile(name, bin, env, None)
    }

    /// [`Proc::spawn`], with the open-files limit (soft and hard) set to
    /// `nofile` when given, so the process cannot raise it.
    pub fn spawn_with_nofile(
        name: &str,
        bin: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Self {
        let mut command = Command::new(binary(bin));
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("OTEL_") || k.starts_with("MESSENGER_") {
                command.env_remove(&key);
            }
        }
        command
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit(2) is async-signal-safe and touches no memory
            // of the parent; it runs in the child between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        Self::spawn_command(name, command)
    }

    /// Spawns `command` as it is (any program), capturing its output.
    pub fn spawn_command(name: &str, mut command: Command) -> Self {
        let program = command.get_program().to_string_lossy().into_owned();
        let bin = program.as_str();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let (tx, output) = watch::channel(Output {
            lines: Vec::new(),
            open_pipes: 2,
            exit: None,
        });
        pump(
            Pipe::Stdout,
            child.stdout.take().expect("stdout"),
            tx.clone(),
        );
        pump(
            Pipe::Stderr,
            child.stderr.take().expect("stderr"),
            tx.clone(),
        );
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for child");
            tx.send_modify(|o| o.exit = Some(status));
        });
        Self {
            name: name.to_owned(),
            pid,
            output,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of every line captured so far.
    pub fn lines(&self) -> Vec<Line> {
        self.output.borrow().lines.clone()
    }

    /// The last lines, for failure messages.
    pub fn tail(&self) -> String {
        let out = self.output.borrow();
        let from = out.lines.len().saturating_sub(40);
        let text: Vec<&str> = out.lines[from..].iter().map(|l| l.text.as_str()).collect();
        format!(
            "--- last output of {} (exit: {:?}) ---\n{}",
            self.name,
            out.exit,
            text.join("\n")
        )
    }

    /// Waits for the first line matching `pred`; fails with the output if the
    /// process ends or [`WAIT`] passes first.
    pub async fn wait_line(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        let mut rx = self.output.clone();
        let waited = tokio::time::timeout(
            WAIT,
            rx.wait_for(|o| o.finished() || o.lines.iter().any(&pred)),
        )
        .await
        .map(|r| r.is_ok());
        let found = self.output.borrow().lines.iter().find(|l| pred(l)).cloned();
        found.unwrap_or_else(|| {
            let why = if waited.is_ok() {
                "process ended"
            } else {
                "timed out"
            };
            panic!("{}: {why} waiting for {what}\n{}", self.name, self.tail())
        })
    }

    /// Waits for the start-up line that names `key` (`grpc_addr`, ...).
    pub async fn wait_addr(&self, key: &str) -> SocketAddr {
        let line = self.wait_line(key, |l| find_addr(l, key).is_some()).await;
        find_addr(&line, key).expect("matched above")
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its code.
    pub async fn sigterm_and_wait(&self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let mut rx = self.output.clone();
        let what = format!("{} to exit after SIGTERM", self.name);
        let out = within(&what, rx.wait_for(Output::finished))
            .await
            .expect("sender lives until exit is recorded");
        out.exit.expect("finished").code()
    }

    /// Waits (bounded) for the process to end by itself; returns its code.
    pub async fn wait_exit(&self) -> Option<i32> {
        let mut rx = self.output.clone();
        let what = format!("{} to exit", self.name);
        let out = within(&what, rx.wait_for(Output::finished))
            .await
            .expect("sender lives until exit is recorded");
        out.exit.expect("finished").code()
    }

    /// Sends SIGHUP (the server reloads its tokens file).
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Sends SIGUSR2 (the server logs its debug dump).
    pub fn sigusr2(&self) {
        self.signal(libc::SIGUSR2);
    }

    /// Freezes the process (SIGSTOP): it reads nothing until [`Proc::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a [`Proc::pause`]d process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Sends SIGKILL and waits (bounded) until the process is reaped.
    pub async fn kill9_and_wait(&self) {
        self.signal(libc::SIGKILL);
        let mut rx = self.output.clone();
        let what = format!("{} to die after SIGKILL", self.name);
        within(&what, rx.wait_for(|o| o.exit.is_some()))
            .await
            .expect("sender lives until exit is recorded");
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn signal(&self, signal: libc::c_int) {
        if self.output.borrow().exit.is_none() {
            // SAFETY: kill(2) has no memory effects; the pid is our own child,
            // not yet reaped (its exit is not recorded), so it was not reused.
            unsafe { libc::kill(self.pid, signal) };
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Resident set size of `pid` in bytes (VmRSS); `None` once it is gone.
pub fn rss_of(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Copies `pipe` into the shared output line by line until EOF.
fn pump(pipe: Pipe, reader: impl Read + Send + 'static, tx: watch::Sender<Output>) {
    std::thread::spawn(move || {
        for bytes in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            tx.send_modify(|o| o.lines.push(Line { pipe, text }));
        }
        tx.send_modify(|o| o.open_pipes -= 1);
    });
}

/// `key`'s address in a log line: a JSON field anywhere in the object, or
/// `key=IP:PORT` in text.
pub fn find_addr(line: &Line, key: &str) -> Option<SocketAddr> {
    if let Some(json) = line.json() {
        return find_key(&json, key)
            .and_then(Value::as_str)
            .and_then(|s| s.trim_matches('"').parse().ok());
    }
    let start = line.text.find(&format!("{key}="))? + key.len() + 1;
    let addr: String = line.text[start..]
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
        .collect();
    addr.parse().ok()
}

/// The first value under `key`, searching objects and arrays depth-first.
pub fn find_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

/// A running `messenger-server` on 127.0.0.1 with gRPC and metrics on port 0.
pub struct ServerProc {
    pub proc: Proc,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
}

/// Spawns the server; returns once both addresses were logged.
pub async fn spawn_server(extra_env: &[(&str, &str)]) -> ServerProc {
    spawn_server_with_nofile(extra_env, None).await
}

/// [`spawn_server`] with an open-files limit (see [`Proc::spawn_with_nofile`]).
pub async fn spawn_server_with_nofile(
    extra_env: &[(&str, &str)],
    nofile: Option<u64>,
) -> ServerProc {
    let mut env = vec![
        ("MESSENGER_SERVER_HOST", "127.0.0.1"),
        ("MESSENGER_SERVER_PORT", "0"),
        ("MESSENGER_METRICS_PORT", "0"),
    ];
    env.extend_from_slice(extra_env);
    let proc = Proc::spawn_with_nofile(
        &service_name(&env, "server"),
        "messenger-server",
        &env,
        nofile,
    );
    let grpc_addr = proc.wait_addr("grpc_addr").await;
    let metrics_addr = proc.wait_addr("metrics_addr").await;
    ServerProc {
        proc,
        grpc_addr,
        metrics_addr,
    }
}

impl ServerProc {
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// A gRPC client on a fresh HTTP/2 connection.
    pub async fn grpc(&self) -> MessengerServerClient<Channel> {
        crate::connect(self.grpc_addr).await
    }

    /// Opens `ReadMessages` on its own connection; returns once headers arrived.
    pub async fn subscribe(&self) -> Streaming<ServerMessageResponse> {
        crate::subscribe_at(self.grpc_addr).await
    }
}

/// A running `messenger-client`, subscribed and serving HTTP.
pub struct ClientProc {
    pub proc: Proc,
    pub http_addr: SocketAddr,
    pub http: reqwest::Client,
}

/// Spawns a client of `server`; returns once it logged its HTTP address,
/// which it does only after its first subscription is registered.
pub async fn spawn_client(server: SocketAddr, extra_env: &[(&str, &str)]) -> ClientProc {
    spawn_client_with_nofile(server, extra_env, None).await
}

/// [`spawn_client`] with an open-files limit (see [`Proc::spawn_with_nofile`]).
pub async fn spawn_client_with_nofile(
    server: SocketAddr,
    extra_env: &[(&str, &str)],
    nofile: Option<u64>,
) -> ClientProc {
    let server = server.to_string();
    let mut env = vec![
        ("MESSENGER_SERVER_ADDR", server.as_str()),
        ("MESSENGER_HTTP_HOST", "127.0.0.1"),
        ("MESSENGER_HTTP_PORT", "0"),
    ];
    env.extend_from_slice(extra_env);
    let proc = Proc::spawn_with_nofile(
        &service_name(&env, "client"),
        "messenger-client",
        &env,
        nofile,
    );
    let http_addr = proc.wait_addr("http_addr").await;
    ClientProc {
        proc,
        http_addr,
        http: reqwest::Client::new(),
    }
}

impl ClientProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    pub fn metrics_url(&self) -> String {
        self.url("/metrics")
    }

    /// `POST path` with `body` and extra headers; returns status and JSON.
    pub async fn post(&self, path: &str, body: String, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = within(path, request.send()).await.expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends through `/sendMessage` with extra headers; returns the sendTime.
    pub async fn send_with(&self, author: &str, text: &str, headers: &[(&str, &str)]) -> String {
        let body = serde_json::json!({ "author": author, "text": text }).to_string();
        let (status, json) = self.post("/sendMessage", body, headers).await;
        assert_eq!(
            status,
            200,
            "{}: sendMessage failed: {json}",
            self.proc.name()
        );
        json["sendTime"].as_str().expect("sendTime").to_owned()
    }

    pub async fn send(&self, author: &str, text: &str) -> String {
        self.send_with(author, text, &[]).await
    }

    pub async fn flush(&self) -> Vec<Msg> {
        let (status, json) = self.post("/getAndFlushMessages", String::new(), &[]).await;
        assert_eq!(status, 200, "{}: flush failed: {json}", self.proc.name());
        serde_json::from_value(json).expect("array of messages")
    }

    /// Flushes until `n` messages have arrived (delivery is asynchronous).
    pub async fn collect(&self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n);
        within(
            &format!("{}: {n} buffered messages", self.proc.name()),
            async {
                while out.len() < n {
                    out.extend(self.flush().await);
                    if out.len() < n {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            },
        )
        .await;
        assert_eq!(
            out.len(),
            n,
            "{}: more messages than expected",
            self.proc.name()
        );
        out
    }
}

/// `OTEL_SERVICE_NAME` from `env`, else `fallback`: names the process in failures.
fn service_name(env: &[(&str, &str)], fallback: &str) -> String {
    env.iter()
        .rev()
        .find(|(k, _)| *k == "OTEL_SERVICE_NAME")
        .map_or(fallback, |(_, v)| v)
        .to_owned()
}
