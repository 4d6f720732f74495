//! Command-line interface: one subcommand per scenario, each with `--json`.
//!
//! Every scenario prints a human table to stdout and, with `--json FILE`,
//! writes the same figures as JSON. `--help` (anywhere) prints the usage and
//! exits 0; a usage error is one line on stderr and exit code 2.
//!
//! Parsing is [`lexopt`]: a small, dependency-free, well-kept lexer
//! (`--flag value`, `--flag=value`, `-h`) that leaves the error text and exit
//! code to us. It replaced clap so the bench builds only what it uses: clap's
//! derive stack was most of the bench's non-wire build. The flags live in one
//! table per subcommand ([`spec`]), so their help text and defaults have one
//! source; the names and defaults are part of the bench's interface (Makefile,
//! `tests/smoke.rs`, the suite and the soak use them).

use crate::cli_spec::{self, Flag, SPECS, Spec};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Command),
    /// `--help`: this text goes to stdout, exit 0.
    Help(String),
}

#[derive(Debug)]
pub(crate) enum Command {
    Fanout(FanoutArgs),
    Idle(IdleArgs),
    Http(HttpArgs),
    Suite(SuiteArgs),
    Soak(SoakArgs),
    SoakFaults(FaultsArgs),
    OtlpSink(OtlpSinkArgs),
}

#[derive(Debug, Clone)]
pub(crate) struct FanoutArgs {
    pub(crate) server: SocketAddr,
    pub(crate) subscribers: usize,
    pub(crate) publishers: usize,
    pub(crate) duration: f64,
    pub(crate) rate: Option<f64>,
    /// When a publisher sends its next message ([`crate::pace::Rule`]).
    pub(crate) pace: crate::pace::Rule,
    pub(crate) connections: Option<usize>,
    pub(crate) payload: usize,
    pub(crate) server_pid: Option<u32>,
    /// A second server of the same chat; see `--replica`.
    pub(crate) replica: Option<SocketAddr>,
    pub(crate) replica_pid: Option<u32>,
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct IdleArgs {
    pub(crate) server: SocketAddr,
    pub(crate) subscribers: usize,
    pub(crate) connections: Option<usize>,
    pub(crate) server_pid: u32,
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpArgs {
    pub(crate) client: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) duration: f64,
    pub(crate) client_pid: Option<u32>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct SuiteArgs {
    pub(crate) bin_dir: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) duration: f64,
    pub(crate) publishers: usize,
    pub(crate) idle_subscribers: usize,
    /// Rounds of each side-by-side group (A B, B A, A B for 3: each side takes each position in turn).
    pub(crate) rounds: usize,
    pub(crate) python: PathBuf,
    pub(crate) nats_server: PathBuf,
    pub(crate) redis_server: PathBuf,
    /// Only these groups ([`crate::suite::GROUPS`]); all if absent.
    pub(crate) only: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct SoakArgs {
    pub(crate) bin_dir: PathBuf,
    pub(crate) duration: f64,
    pub(crate) publishers: usize,
    pub(crate) rate: f64,
    pub(crate) http_rate: f64,
    pub(crate) subscribers: usize,
    pub(crate) churners: usize,
    pub(crate) payload: usize,
    pub(crate) json: Option<PathBuf>,
}

/// `soak-faults` ([`crate::soak_faults`]).
#[derive(Debug, Clone)]
pub(crate) struct FaultsArgs {
    pub(crate) bin_dir: PathBuf,
    pub(crate) duration: f64,
    pub(crate) publishers: usize,
    pub(crate) rate: f64,
    pub(crate) http_rate: f64,
    pub(crate) payload: usize,
    /// Checked, resuming gRPC subscribers per server replica.
    pub(crate) subscribers: usize,
    pub(crate) min_replicas: u64,
    pub(crate) fault_every: f64,
    pub(crate) faults: String,
    pub(crate) seed: Option<u64>,
    pub(crate) redis_server: PathBuf,
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct OtlpSinkArgs {
    pub(crate) listen: SocketAddr,
}

/// Parses the process's arguments (without the program name).
pub(crate) fn parse_env() -> Result<Parsed, String> {
    parse(std::env::args_os().skip(1))
}

/// Parses `args` (without the program name); `Err` is a one-line usage error.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let spec = match parser.next().map_err(|e| e.to_string())? {
        Some(Long("help") | Short('h')) | None => return Ok(Parsed::Help(cli_spec::usage())),
        Some(Value(name)) => {
            let name = name.string().map_err(|e| e.to_string())?;
            SPECS.iter().find(|s| s.name == name).ok_or_else(|| {
                format!("unknown subcommand '{name}' (see messenger-bench --help)")
            })?
        }
        Some(arg) => return Err(format!("{} before the subcommand", arg.unexpected())),
    };
    let mut given = Given {
        spec,
        values: Vec::new(),
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") | Short('h') => return Ok(Parsed::Help(cli_spec::help(spec))),
            Long(name) => {
                let flag = spec.flag(name).ok_or_else(|| {
                    format!(
                        "unexpected option '--{name}' for {} (see messenger-bench {} --help)",
                        spec.name, spec.name
                    )
                })?;
                if given.values.iter().any(|(n, _)| *n == flag.name) {
                    return Err(format!("--{} given more than once", flag.name));
                }
                let value = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?;
                given.values.push((flag.name, value));
            }
            other => return Err(format!("{} for {}", other.unexpected(), spec.name)),
        }
    }
    given.command().map(Parsed::Run)
}

/// The flags given for one subcommand, read against its [`Spec`].
struct Given {
    spec: &'static Spec,
    values: Vec<(&'static str, String)>,
}

impl Given {
    /// The given value, else the flag's default; `None` if neither.
    fn opt<T: FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        let flag = self.spec.flag(name).expect("flag is in its spec");
        let text = self
            .values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .or(flag.default);
        text.map(|t| {
            t.parse::<T>()
                .map_err(|e| format!("invalid value '{t}' for --{name}: {e}"))
        })
        .transpose()
    }

    fn get<T: FromStr>(&self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        self.opt(name)?.ok_or_else(|| {
            format!(
                "--{name} is required for {} (see messenger-bench {} --help)",
                self.spec.name, self.spec.name
            )
        })
    }

    fn command(&self) -> Result<Command, String> {
        Ok(match self.spec.name {
            "fanout" => Command::Fanout(FanoutArgs {
                server: self.get("server")?,
                subscribers: self.get("subscribers")?,
                publishers: self.get("publishers")?,
                duration: self.get("duration")?,
                rate: self.opt("rate")?,
                pace: self.get("pace")?,
                connections: self.opt("connections")?,
                payload: self.get("payload")?,
                server_pid: self.opt("server-pid")?,
                replica: self.opt("replica")?,
                replica_pid: self.opt("replica-pid")?,
                json: self.opt("json")?,
            }),
            "idle" => Command::Idle(IdleArgs {
                server: self.get("server")?,
                subscribers: self.get("subscribers")?,
                connections: self.opt("connections")?,
                server_pid: self.get("server-pid")?,
                json: self.opt("json")?,
            }),
            "http" => Command::Http(HttpArgs {
                client: self.get("client")?,
                connections: self.get("connections")?,
                duration: self.get("duration")?,
                client_pid: self.opt("client-pid")?,
                server_pid: self.opt("server-pid")?,
                json: self.opt("json")?,
            }),
            "suite" => Command::Suite(SuiteArgs {
                bin_dir: self.get("bin-dir")?,
                out: self.get("out")?,
                duration: self.get("duration")?,
                publishers: self.get("publishers")?,
                idle_subscribers: self.get("idle-subscribers")?,
                rounds: self.get::<usize>("rounds")?.max(1),
                only: self
                    .opt::<String>("only")?
                    .map(|o| crate::suite::groups(&o))
                    .transpose()?,
                python: self.get("python")?,
                nats_server: self.get("nats-server")?,
                redis_server: self.get("redis-server")?,
            }),
            "soak" => Command::Soak(SoakArgs {
                bin_dir: self.get("bin-dir")?,
                duration: self.get("duration")?,
                publishers: self.get("publishers")?,
                rate: self.get("rate")?,
                http_rate: self.get("http-rate")?,
                subscribers: self.get("subscribers")?,
                churners: self.get("churners")?,
                payload: self.get("payload")?,
                json: self.opt("json")?,
            }),
            "soak-faults" => Command::SoakFaults(FaultsArgs {
                bin_dir: self.get("bin-dir")?,
                duration: self.get("duration")?,
                publishers: self.get("publishers")?,
                rate: self.get("rate")?,
                http_rate: self.get("http-rate")?,
                payload: self.get("payload")?,
                subscribers: self.get("subscribers")?,
                min_replicas: self.get("min-replicas")?,
                fault_every: self.get("fault-every")?,
                faults: self.get("faults")?,
                seed: self.opt("seed")?,
                redis_server: self.get("redis-server")?,
                json: self.opt("json")?,
            }),
            "otlp-sink" => Command::OtlpSink(OtlpSinkArgs {
                listen: self.get("listen")?,
            }),
            other => unreachable!("subcommand {other} has a spec but no parser"),
        })
    }
}

impl Spec {
    fn flag(&self, name: &str) -> Option<&'static Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
}

/// `secs` as a positive duration, or a usage error.
pub(crate) fn duration(secs: f64) -> Result<std::time::Duration, String> {
    if secs.is_finite() && secs > 0.0 {
        Ok(std::time::Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "--duration must be a positive number of seconds, not {secs}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Command, String> {
        match parse(line.split_whitespace().map(OsString::from))? {
            Parsed::Run(c) => Ok(c),
            Parsed::Help(h) => Err(format!("help: {h}")),
        }
    }

    #[test]
    fn defaults_and_forms_match_the_documented_interface() {
        let Ok(Command::Fanout(f)) = run("fanout --server 127.0.0.1:1 --rate=5") else {
            panic!("fanout parses")
        };
        assert_eq!((f.subscribers, f.publishers, f.payload), (1, 4, 64));
        assert_eq!((f.duration, f.rate, f.connections), (10.0, Some(5.0), None));
        assert_eq!(f.pace, crate::pace::Rule::Ack);
        let Ok(Command::Suite(s)) = run("suite") else {
            panic!("suite parses")
        };
        assert_eq!(s.bin_dir, PathBuf::from("target/release"));
        assert_eq!(
            (s.duration, s.publishers, s.idle_subscribers),
            (8.0, 4, 10_000)
        );
        assert_eq!((s.rounds, s.only), (3, None));
        let Ok(Command::Suite(s)) = run("suite --only redis-min-replicas,http") else {
            panic!("suite --only parses")
        };
        let only = ["redis-min-replicas", "http"].map(String::from).to_vec();
        assert_eq!(s.only, Some(only));
        let Ok(Command::Soak(s)) = run("soak --duration 60") else {
            panic!("soak parses")
        };
        assert_eq!(
            (s.rate, s.http_rate, s.churners, s.payload),
            (200.0, 20.0, 4, 128)
        );
        let Ok(Command::SoakFaults(f)) = run("soak-faults") else {
            panic!("soak-faults parses")
        };
        assert_eq!(
            (
                f.publishers,
                f.rate,
                f.subscribers,
                f.min_replicas,
                f.fault_every
            ),
            (4, 1000.0, 4, 1, 5.0)
        );
    }

    #[test]
    fn usage_errors_are_one_line_and_help_is_not_an_error() {
        for bad in [
            "fanout",
            "fanout --server nowhere",
            "fanout --server 127.0.0.1:1 --bogus 1",
            "fanout --server 127.0.0.1:1 --pace sometimes",
            "fanout --server 127.0.0.1:1 --server 127.0.0.1:2",
            "idle --server 127.0.0.1:1 --subscribers 5",
            "frobnicate",
            "--verbose fanout",
            "suite --only bogus",
            "suite --only http,http",
        ] {
            let e = run(bad).expect_err(bad);
            assert!(!e.contains('\n') && !e.starts_with("help"), "{bad}: {e}");
        }
        for help in ["", "--help", "-h", "fanout --help", "otlp-sink -h"] {
            let parsed = parse(help.split_whitespace().map(OsString::from));
            assert!(matches!(parsed, Ok(Parsed::Help(_))), "{help}");
        }
    }
}
