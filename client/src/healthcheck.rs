//! `messenger-client healthcheck`: `GET /readyz` on this host's HTTP port, for
//! container `HEALTHCHECK`s in images without curl.
//!
//! Exit 0 on `200` (subscribed and serving); 1 for anything else (refused,
//! 503 while the stream is down, timed out). A plain HTTP/1.1 request over a
//! std socket: one request needs no HTTP client. Every socket operation is
//! bounded by [`TIMEOUT`].

use crate::config::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Upper bound of each step: connect, write, read.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the probe against the configured port and maps the outcome to the
/// exit code, printing one line.
pub fn run(config: &Config) -> ExitCode {
    let addr = probe_addr(config);
    match check(addr, TIMEOUT) {
        Ok(()) => {
            println!("http://{addr}/readyz: 200");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("http://{addr}/readyz: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The HTTP listen address, with a wildcard host replaced by loopback.
pub fn probe_addr(config: &Config) -> SocketAddr {
    messenger_runtime::cli::local_probe_addr(config.http_host, config.http_port)
}

/// `Ok` when `GET /readyz` answers 200; the error says what came back instead.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        // proto/CONTRACT.md: the HTTP port opens once the first subscription is
        // registered, so a closed port usually means "not subscribed yet".
        std::io::ErrorKind::ConnectionRefused => format!(
            "connect: {e} (the client opens its HTTP port only once subscribed to the server; \
             its log says why it is not)"
        ),
        _ => format!("connect: {e}"),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    // The status line fits in the first read of any sane response.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| format!("read: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("answered {status:?}")),
    }
}
