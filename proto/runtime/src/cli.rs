//! Process plumbing shared by both binaries: config parsing with a usage exit,
//! the shutdown signal, and where a local health probe finds a listener;
//! the value parsers of every setting, one per kind ([`values`]).

mod stop_clock;
pub use stop_clock::StopClock;

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, Parser};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

mod values;
pub use values::{ip_addr, number, port_of};

/// Exit code for an invalid configuration (`EX_USAGE`-style, as clap uses).
pub const EXIT_USAGE: u8 = 2;

/// Parses flags and environment. `--help`/`--version` print and exit 0; an
/// invalid value prints one line to stderr ([`usage_line`]) and exits with
/// [`EXIT_USAGE`].
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let argv: Vec<OsString> = std::env::args_os().collect();
            let line = usage_line(&T::command(), e, &argv, |name| std::env::var_os(name));
            usage_exit(format!("{line} (see --help)"))
        }
    }
}

/// clap's error as one line, with two changes. A bad value that came from
/// the environment (its flag is not in `argv`, its variable is set) is
/// named by its variable, then its flag: clap names only the flag, which a
/// user who set the variable cannot find. And it never shows a secret: the
/// value of an argument whose env values are hidden (a token) is replaced by
/// `***`, and so is the userinfo of any URL ([`redact_userinfo`]).
pub fn usage_line(
    command: &clap::Command,
    mut error: clap::Error,
    argv: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
) -> String {
    let mut command = command.clone();
    command.build();
    let failed = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(rendered)) => find_arg(&command, rendered).cloned(),
        _ => None,
    };
    if let Some(arg) = failed {
        let variable = arg.get_env().and_then(|v| v.to_str()).map(str::to_owned);
        let from_env = variable
            .as_deref()
            .is_some_and(|v| env(v).is_some() && !on_command_line(&arg, argv));
        if let (true, Some(variable)) = (from_env, variable) {
            let flag = arg
                .get_long()
                .map_or_else(|| arg.to_string(), |l| format!("--{l}"));
            let name = format!("{variable} (environment; flag {flag})");
            error.insert(ContextKind::InvalidArg, ContextValue::String(name));
        }
        if arg.is_hide_env_values_set() {
            let hidden = ContextValue::String("***".to_owned());
            error.insert(ContextKind::InvalidValue, hidden);
        }
    }
    let rendered = error.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let line = if parts.is_empty() {
        "invalid configuration".to_owned()
    } else {
        parts.join(" ")
    };
    redact_userinfo(&line)
}

/// The argument clap rendered as `rendered` (`--flag <VALUE>`), in
/// `command` or any of its subcommands.
fn find_arg<'a>(command: &'a clap::Command, rendered: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|a| a.to_string() == rendered)
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_arg(sub, rendered))
        })
}

/// Whether `argv` gives `arg` as `--long`, `--long=...`, `-s` or `-s...`.
fn on_command_line(arg: &Arg, argv: &[OsString]) -> bool {
    argv.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
        let long = arg.get_long().is_some_and(|l| {
            a.strip_prefix("--")
                .is_some_and(|rest| rest == l || rest.starts_with(&format!("{l}=")))
        });
        let short = arg.get_short().is_some_and(|s| {
            a.len() > 1 && a.starts_with('-') && !a.starts_with("--") && a[1..].starts_with(s)
        });
        long || short
    })
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
    redact_password_params(&out)
}

/// `line` with the value of every `...password=<value>` query parameter (a
/// Sentinel URL's `sentinel_password`) replaced by `***`.
fn redact_password_params(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("password=") {
        let (head, tail) = rest.split_at(at + "password=".len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "'\"&#".contains(c))
            .unwrap_or(tail.len());
        out.push_str("***");
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
/// called inside a Tokio runtime, first thing in `main`, on the main thread.
///
/// Once the handlers are in place, SIGINT and SIGTERM are unblocked on the
/// calling thread. A supervisor that starts us with them blocked (`ops/run.py`
/// does; a blocked signal's mask survives `execve`, POSIX `sigprocmask`) can
/// therefore stop us at any moment: a signal sent before this call stays
/// pending and is handled here, instead of killing a process that had not yet
/// installed its handler.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    unblock_stop_signals();
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

/// Unblocks SIGINT and SIGTERM on the calling thread (a no-op when they were
/// not blocked). Threads started later from it inherit its mask.
fn unblock_stop_signals() {
    // SAFETY: `set` is initialised by `sigemptyset` before use, and
    // `pthread_sigmask` only changes this thread's signal mask; a null old-set
    // pointer is allowed (POSIX).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
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
    use super::{redact_userinfo, usage_line};
    use clap::{CommandFactory, Parser};
    use std::ffi::OsString;

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(10..=600))]
        timeout_ms: Option<u64>,
        #[arg(long, env = "DEMO_URL")]
        url: Option<u16>,
        #[arg(long, env = "DEMO_TOKEN", hide_env_values = true, value_parser = clap::value_parser!(u8))]
        token: Option<u8>,
    }

    /// The line for `argv` with `env` as the environment.
    fn line(argv: &[&str], env: &[(&str, &str)]) -> String {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        // clap reads the process environment, which a test must not set:
        // the value comes from argv, and `env` says where it "came from".
        let error = Demo::try_parse_from(&argv).unwrap_err();
        usage_line(&Demo::command(), error, &argv, lookup)
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        // Given as a flag, the flag is named, as clap does.
        let flag = line(&["demo", "--timeout-ms", "5"], &[]);
        assert!(flag.contains("'--timeout-ms <TIMEOUT_MS>'"), "{flag}");
        assert!(flag.contains("5 is not in 10..=600"), "{flag}");
        // The same value from the variable (argv without the flag is how
        // clap sees it): the variable, then the flag.
        let argv: Vec<OsString> = vec!["demo".into()];
        let error = Demo::try_parse_from(["demo", "--timeout-ms=5"]).unwrap_err();
        let env = |n: &str| (n == "DEMO_TIMEOUT_MS").then(|| OsString::from("5"));
        let from_env = usage_line(&Demo::command(), error, &argv, env);
        assert!(
            from_env.contains("DEMO_TIMEOUT_MS (environment; flag --timeout-ms)"),
            "{from_env}"
        );
        assert!(from_env.contains("5 is not in 10..=600"), "{from_env}");
        assert_eq!(from_env.lines().count(), 1, "{from_env}");
    }

    #[test]
    fn hidden_values_and_userinfo_never_show() {
        let token = line(&["demo", "--token", "s3cr3t"], &[]);
        assert!(
            !token.contains("s3cr3t") && token.contains("***"),
            "{token}"
        );
        let url = line(&["demo", "--url", "redis://:pw@h:1"], &[]);
        assert!(
            !url.contains("pw") && url.contains("redis://***@h:1"),
            "{url}"
        );
    }

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
        assert_eq!(
            redact_userinfo("'redis+sentinel://h/m?sentinel_password=s3cr3t&x=1' bad"),
            "'redis+sentinel://h/m?sentinel_password=***&x=1' bad"
        );
    }
}
