//! `gen-certs DIR`: a development CA, server and client certificates, and
//! random bearer tokens for `make certs` (see `messenger_tests::certs`).

use clap::Parser;
use messenger_tests::certs::{DEV_FILES, write_dev_set};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gen-certs",
    about = "Writes a dev CA, server/client certificates and tokens"
)]
struct Args {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// Overwrite an existing set (running servers and clients keep the old one until restarted).
    #[arg(long)]
    force: bool,
    /// Make keys, tokens and env files readable by all (0644), for containers
    /// that run as a different user than the one who generated them.
    #[arg(long)]
    shared_keys: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.force && args.dir.join(DEV_FILES[0]).exists() {
        eprintln!(
            "{} already holds a set; keeping it (pass --force, or `make certs FORCE=1`, to replace it)",
            args.dir.display()
        );
        return ExitCode::SUCCESS;
    }
    match write_dev_set(&args.dir, args.shared_keys) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-certs: cannot write into {}: {e}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}
