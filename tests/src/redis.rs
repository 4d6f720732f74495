//! A real `redis-server` for the Redis-engine tests, on a free loopback port,
//! without persistence or with an append-only file in a directory the test
//! keeps (to restart it "with its data"). Ready when it logs that it accepts
//! connections; every wait is bounded. A missing `redis-server` fails the
//! test with what to install, never skips it.

use crate::procs::Proc;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tests look for the server binary (Debian's `redis-server`).
pub const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server`; killed (SIGKILL) on drop.
pub struct RedisProc {
    pub proc: Proc,
    pub port: u16,
}

/// The path of `redis-server`, or a failure saying how to install it.
pub fn redis_server_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(REDIS_SERVER))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{REDIS_SERVER} is not installed: the Redis-engine tests need it \
                 (`apt-get install redis-server`; `make test` and .ci/run install it)"
            )
        })
}

/// A loopback port that was free a moment ago (redis-server needs an explicit one).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl RedisProc {
    /// Without persistence: a restart comes back empty.
    pub async fn start() -> Self {
        Self::start_on(free_port(), None).await
    }

    /// On `port`; with `dir`, an append-only file there (fsync per write), so
    /// a restart on the same `dir` comes back with every acknowledged write.
    pub async fn start_on(port: u16, dir: Option<&Path>) -> Self {
        let persistence: &[&str] = match dir {
            Some(_) => &["--appendonly", "yes", "--appendfsync", "always", "--dir"],
            None => &["--appendonly", "no"],
        };
        let mut args: Vec<&std::ffi::OsStr> = persistence.iter().map(|a| a.as_ref()).collect();
        args.extend(dir.map(Path::as_os_str));
        Self::start_with(port, &args, &[]).await
    }

    /// Without persistence unless `args` say otherwise, on `port`, with more
    /// `args` (`--maxmemory 8mb`, `--requirepass P`) and environment.
    pub async fn start_with(
        port: u16,
        args: &[impl AsRef<std::ffi::OsStr>],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(redis_server_path());
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        command.args(args).envs(env.iter().copied());
        let proc = Proc::spawn_command(&format!("redis:{port}"), command);
        proc.wait_line("redis ready", |l| {
            l.text.contains("Ready to accept connections")
        })
        .await;
        Self { proc, port }
    }

    /// TLS only, on a free port, with `cert` and `key` (PEM files). With
    /// `client_ca`, clients must present a certificate it signed (Redis's
    /// default `tls-auth-clients yes`); without, they need none. Its URL is
    /// `rediss://127.0.0.1:<port>`.
    pub async fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let port = free_port();
        let mut command = Command::new(redis_server_path());
        command
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key);
        match client_ca {
            Some(ca) => command.arg("--tls-ca-cert-file").arg(ca),
            None => command.args(["--tls-auth-clients", "no"]),
        };
        let proc = Proc::spawn_command(&format!("redis-tls:{port}"), command);
        proc.wait_line("redis ready", |l| {
            l.text.contains("Ready to accept connections")
        })
        .await;
        Self { proc, port }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for driving Redis by hand.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.conn_as(&self.url()).await
    }

    /// A connection to `url` (this Redis with credentials).
    pub async fn conn_as(&self, url: &str) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(url).expect("redis URL");
        crate::within(
            "connect to redis",
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect to redis")
    }
}
