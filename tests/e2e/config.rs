//! Every setting as a user meets it, for every binary and subcommand: each
//! variable a binary reads is in its `--help` and in its README's table
//! (`server/README.md`, `client/README.md`); the README's *accepted* ranges are
//! the parsers' own; and a bad value given
//! through a variable is a usage error (exit 2, one line) that names the
//! variable, not only the flag (found by review: `MESSENGER_BROKER_TIMEOUT_MS=5`
//! said `--broker-timeout-ms`, and `healthcheck` read three TLS variables no
//! `--help` or README table listed).

use clap::{Arg, CommandFactory};
use messenger_tests::procs::binary;
use std::net::TcpListener;
use std::process::{Command, Output};

const SERVER_README: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../server/README.md"));
const CLIENT_README: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../client/README.md"));

/// A binary, its clap command, its README and the heading of its table there.
pub(crate) struct Binary {
    pub(crate) name: &'static str,
    pub(crate) command: clap::Command,
    readme: &'static str,
    table: &'static str,
}

pub(crate) fn binaries() -> [Binary; 2] {
    [
        Binary {
            name: "messenger-server",
            command: messenger_server::Config::command(),
            readme: SERVER_README,
            table: "**Server** (`messenger-server`)",
        },
        Binary {
            name: "messenger-client",
            command: messenger_client::Config::command(),
            readme: CLIENT_README,
            table: "**Client** (`messenger-client`)",
        },
    ]
}

/// An argument read from a variable, and the subcommand it belongs to.
pub(crate) struct EnvArg {
    pub(crate) subcommand: Option<String>,
    pub(crate) variable: String,
    pub(crate) arg: Arg,
}

pub(crate) fn env_args(command: &clap::Command) -> Vec<EnvArg> {
    let mut command = command.clone();
    command.build();
    let of = |c: &clap::Command, sub: Option<String>| -> Vec<EnvArg> {
        c.get_arguments()
            .filter_map(|a| {
                let variable = a.get_env()?.to_str()?.to_owned();
                Some(EnvArg {
                    subcommand: sub.clone(),
                    variable,
                    arg: a.clone(),
                })
            })
            .collect()
    };
    let mut all = of(&command, None);
    for sub in command.get_subcommands() {
        all.extend(of(sub, Some(sub.get_name().to_owned())));
    }
    all
}

/// The rows of the table under `heading` in `readme`.
fn table(readme: &'static str, heading: &str) -> Vec<&'static str> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("{heading}"));
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect()
}

/// The cells of the row naming `variable` in its first cell.
fn row(rows: &[&'static str], variable: &str) -> Option<Vec<&'static str>> {
    let quoted = format!("`{variable}`");
    rows.iter()
        .map(|r| {
            r.trim_matches('|')
                .split(" | ")
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells[0].contains(&quoted))
}

/// Whether `value` given as the argument's flag parses.
fn accepts(command: &clap::Command, env_arg: &EnvArg, value: &str) -> bool {
    let mut argv = vec!["bin".to_owned()];
    argv.extend(env_arg.subcommand.clone());
    argv.push(format!(
        "--{}={value}",
        env_arg.arg.get_long().expect("a long flag")
    ));
    command.clone().try_get_matches_from(argv).is_ok()
}

/// `A..=B` of an *accepted* cell, when it is a range.
fn range(cell: &str) -> Option<(u64, u64)> {
    let (a, b) = cell.trim_matches('`').split_once("..=")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn run(mut command: Command) -> Output {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESSENGER_") {
            command.env_remove(&key);
        }
    }
    command.env("NO_COLOR", "1").output().expect("run binary")
}

#[test]
fn every_variable_is_in_help_and_in_the_readme() {
    let standard = table(SERVER_README, "**Both, standard names without flags**");
    for bin in binaries() {
        let rows = table(bin.readme, bin.table);
        let mut helps = std::collections::HashMap::new();
        for env_arg in env_args(&bin.command) {
            let sub = env_arg.subcommand.clone();
            let help = helps.entry(sub.clone()).or_insert_with(|| {
                let mut command = Command::new(binary(bin.name));
                command.args(sub.iter()).arg("--help");
                let out = run(command);
                assert!(out.status.success(), "{} {sub:?} --help", bin.name);
                String::from_utf8(out.stdout).unwrap()
            });
            let var = &env_arg.variable;
            assert!(
                help.contains(&format!("[env: {var}")),
                "{} {sub:?} --help lacks {var}:\n{help}",
                bin.name
            );
            let cells = row(&rows, var)
                .unwrap_or_else(|| panic!("README table {} has no row for {var}", bin.table));
            let flag = format!("--{}", env_arg.arg.get_long().unwrap());
            assert!(cells[1].contains(&flag), "{var}: {flag} not in {cells:?}");
        }
        let top = &helps[&None];
        for (var, _) in messenger_runtime::telemetry::ENV_VARS {
            assert!(top.contains(var), "{} --help lacks {var}", bin.name);
            assert!(
                standard.iter().any(|r| r.contains(&format!("`{var}`"))),
                "README standard-variables table lacks {var}"
            );
        }
    }
}

#[test]
fn readme_ranges_are_the_parsers() {
    for bin in binaries() {
        let rows = table(bin.readme, bin.table);
        for env_arg in env_args(&bin.command) {
            let var = &env_arg.variable;
            let accepted = row(&rows, var).expect("a row (other test)")[3];
            let ok = |v: &str| accepts(&bin.command, &env_arg, v);
            match range(accepted) {
                Some((low, high)) => {
                    assert!(
                        ok(&low.to_string()) && ok(&high.to_string()),
                        "{var} {accepted}"
                    );
                    assert!(
                        !ok(&(high + 1).to_string()),
                        "{var} accepts above {accepted}"
                    );
                    if low > 0 {
                        assert!(
                            !ok(&(low - 1).to_string()),
                            "{var} accepts below {accepted}"
                        );
                    }
                }
                // Not a range: then not a number either.
                None => assert!(
                    ["0", "1", "100", "100000"].iter().all(|v| !ok(v)) || ok("x"),
                    "{var} is a number: its README row must give its range, not {accepted:?}"
                ),
            }
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on, so a probe that ran by
/// mistake ends at once.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

#[test]
fn a_bad_value_from_a_variable_names_the_variable() {
    let closed = closed_port();
    for bin in binaries() {
        let rows = table(bin.readme, bin.table);
        for env_arg in env_args(&bin.command) {
            let var = &env_arg.variable;
            if accepts(&bin.command, &env_arg, "x") {
                // Free-form (a file, a name, a token): checked where used.
                let accepted = row(&rows, var).expect("a row")[3];
                assert!(
                    ["file", "non-empty text", "printable ASCII"]
                        .iter()
                        .any(|kind| accepted.starts_with(kind)),
                    "{var} takes any text, but README says {accepted:?}"
                );
                continue;
            }
            let mut command = Command::new(binary(bin.name));
            command
                .arg("healthcheck")
                .env("MESSENGER_SERVER_HOST", "127.0.0.1")
                .env("MESSENGER_HTTP_HOST", "127.0.0.1")
                .env("MESSENGER_SERVER_PORT", &closed)
                .env("MESSENGER_HTTP_PORT", &closed)
                .env(var, "x");
            let out = run(command);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{var}=x: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{var}=x: {stderr}");
            let flag = format!("--{}", env_arg.arg.get_long().unwrap());
            assert!(
                stderr.contains(&format!("'{var} (environment; flag {flag})'")),
                "{var}=x: {stderr}"
            );
        }
    }
}

/// Given as a flag, the flag is what the line names, as clap says it.
#[test]
fn a_bad_flag_names_the_flag() {
    let mut command = Command::new(binary("messenger-server"));
    command.args(["--broker-timeout-ms", "5", "healthcheck"]);
    let out = run(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'--broker-timeout-ms <BROKER_TIMEOUT_MS>': 5 is not in 10..=600000"),
        "{stderr}"
    );
    assert!(!stderr.contains("environment"), "{stderr}");
}
