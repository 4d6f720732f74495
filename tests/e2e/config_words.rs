//! The words of a bad setting, by kind, for every variable of both binaries
//! (issue 26, item 8): a number says its range whatever is wrong with it
//! (`MESSENGER_MAX_TEXT_BYTES=-5` said "invalid digit found in string"), an
//! address to listen on says to give an IP (`MESSENGER_SERVER_HOST=localhost`
//! said "invalid IP address syntax"), and a port out of range says so
//! (`MESSENGER_SERVER_ADDR=127.0.0.1:99999` said "has no port").

use super::config::{EnvArg, binaries, env_args};

/// clap's error for `value` given to the argument, or `None` if accepted.
fn error(command: &clap::Command, env_arg: &EnvArg, value: &str) -> Option<String> {
    let mut argv = vec!["bin".to_owned()];
    argv.extend(env_arg.subcommand.clone());
    let long = env_arg.arg.get_long().expect("a long flag");
    argv.push(format!("--{long}={value}"));
    let e = command.clone().try_get_matches_from(argv).err()?;
    Some(e.render().to_string())
}

/// Words of Rust's parse errors, which say nothing of what to give instead.
const RAW_PARSE_ERRORS: [&str; 4] = [
    "invalid digit",
    "number too large",
    "invalid IP address syntax",
    "cannot parse integer",
];

#[test]
fn every_number_says_its_range_and_every_listen_address_says_to_give_an_ip() {
    let (mut numbers, mut ips) = (0, 0);
    for bin in binaries() {
        for env_arg in env_args(&bin.command) {
            let var = &env_arg.variable;
            let bad = |v: &str| error(&bin.command, &env_arg, v);
            for value in ["-5", "x", "1.5", "99999999999999999999999", "localhost", ""] {
                if let Some(e) = bad(value) {
                    for raw in RAW_PARSE_ERRORS {
                        assert!(!e.contains(raw), "{var}={value:?}: {e}");
                    }
                }
            }
            let takes_text = bad("x").is_none();
            let is_number =
                !takes_text && ["0", "1", "100", "100000"].iter().any(|v| bad(v).is_none());
            if is_number {
                numbers += 1;
                let negative = bad("-5").expect("a negative is refused");
                assert!(negative.contains("-5 is not in "), "{var}=-5: {negative}");
                let text = bad("x").expect("refused");
                assert!(
                    text.contains("expected a whole number in "),
                    "{var}=x: {text}"
                );
                let huge = bad("99999999999999999999999").expect("refused");
                assert!(huge.contains("is not in "), "{var}=huge: {huge}");
            }
            let is_ip = !takes_text && bad("127.0.0.1").is_none() && bad("::").is_none();
            if is_ip {
                ips += 1;
                let name = bad("localhost").expect("a name is refused");
                assert!(
                    name.contains("give an IP")
                        && name.contains("127.0.0.1")
                        && name.contains("0.0.0.0"),
                    "{var}=localhost: {name}"
                );
            }
            for (valid, out_of_range) in [
                ("127.0.0.1:1", "127.0.0.1:99999"),
                ("redis://127.0.0.1:1", "redis://127.0.0.1:99999"),
            ] {
                if !takes_text && bad(valid).is_none() {
                    let e = bad(out_of_range).expect("refused");
                    assert!(
                        e.contains("99999")
                            && e.contains("out of range")
                            && !e.contains("has no port"),
                        "{var}={out_of_range}: {e}"
                    );
                }
            }
        }
    }
    // Both binaries' ports, sizes and timeouts; both listen hosts.
    assert!(numbers >= 20, "only {numbers} numeric variables found");
    assert_eq!(ips, 2, "MESSENGER_SERVER_HOST and MESSENGER_HTTP_HOST");
}
