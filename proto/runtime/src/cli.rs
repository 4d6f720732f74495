//! Process plumbing shared by both binaries: config parsing with a usage exit,
//! the shutdown signal, and where a local health probe finds a listener.

use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

/// Exit code for an invalid configuration (`EX_USAGE`-style, as clap uses).
pub const EXIT_USAGE: u8 = 2;

/// Parses flags and environment. `--help`/`--version` print and exit 0; an
/// invalid value prints one line to stderr and exits with [`EXIT_USAGE`].
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.to_string();
            let line = rendered.lines().next().unwrap_or("invalid configuration");
            eprintln!("{} (see --help)", redact_userinfo(line));
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}

/// `line` with the user and password of every URL in it (`scheme://user:
/// password@host`, RFC 3986 userinfo) replaced by `***`: clap quotes an
/// invalid value whole, and a broker URL may carry a password.
pub fn redact_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "'\"/?#".contains(c))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str("***");
                out.push_str(&tail[userinfo..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Prints one line to stderr and exits with [`EXIT_USAGE`]: for configuration
/// found invalid after parsing (a file that cannot be used).
pub fn usage_exit(line: impl std::fmt::Display) -> ! {
    eprintln!("{line}");
    std::process::exit(i32::from(EXIT_USAGE));
}

/// Maps a top-level result to the process exit code, logging the error.
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-files limit to the hard limit: every subscriber is a
/// socket, and the usual soft default (1024) caps a server far too low.
/// Returns the soft limit before and after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let raised = rlimit::increase_nofile_limit(hard)?;
    Ok((soft, raised))
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed when this is called, not when first polled, so a signal that
/// arrives before the caller starts waiting is not lost (nor fatal). Must be
/// called inside a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        let recv = |s: &mut Option<tokio::signal::unix::Signal>| {
            let s = s.take();
            async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = recv(&mut interrupt) => tracing::info!(signal = "SIGINT", "shutdown requested"),
            () = recv(&mut terminate) => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        }
    }
}

/// Where a probe on this host reaches a listener bound to `host:port`: a
/// wildcard host (`0.0.0.0`, `::`) becomes the loopback address of its family.
pub fn local_probe_addr(host: IpAddr, port: u16) -> SocketAddr {
    let host = match host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(host, port)
}

#[cfg(test)]
mod tests {
    use super::redact_userinfo;

    #[test]
    fn userinfo_of_every_url_is_redacted() {
        assert_eq!(
            redact_userinfo("invalid value 'redis://:s3cr3t@127.0.0.1:99999' for '--broker-url'"),
            "invalid value 'redis://***@127.0.0.1:99999' for '--broker-url'"
        );
        assert_eq!(
            redact_userinfo("a rediss://admin:p@ss@host/x and http://host:1/a@b"),
            "a rediss://***@host/x and http://host:1/a@b"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
    }
}
