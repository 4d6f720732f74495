//! `gen-certs DIR`: a development CA, server and client certificates, and
//! random bearer tokens for `make certs` (see `messenger_tests::certs`).
//! Gives the containers' user (uid 10001) read access to what they read,
//! also in a set it keeps (`certs::share_dev_set`).

use clap::Parser;
use messenger_tests::certs::{Access, CONTAINER_UID, DEV_FILES, share_dev_set, write_dev_set};
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
    /// Make keys, tokens and env files readable by all (0644), e.g. for
    /// rootless podman, where the containers' uid is a subordinate one.
    /// Without it, keys and tokens get an ACL entry for uid 10001 only.
    #[arg(long)]
    shared_keys: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fail = |e: std::io::Error| {
        eprintln!("gen-certs: cannot write into {}: {e}", args.dir.display());
        ExitCode::FAILURE
    };
    if !args.force && args.dir.join(DEV_FILES[0]).exists() {
        eprintln!(
            "{} already holds a set; keeping it (pass --force, or `make certs FORCE=1`, to replace it)",
            args.dir.display()
        );
    } else {
        match write_dev_set(&args.dir, args.shared_keys) {
            Ok(files) => files.iter().for_each(|f| println!("wrote {}", f.display())),
            Err(e) => return fail(e),
        }
    }
    match share_dev_set(&args.dir, args.shared_keys) {
        Ok(files) => {
            for (file, access) in files {
                let how = match access {
                    Access::Acl => {
                        format!("0600 + ACL user:{CONTAINER_UID}:r (the containers' uid)")
                    }
                    Access::WorldReadable if args.shared_keys => "0644 (--shared-keys)".to_owned(),
                    Access::WorldReadable => "0644: this file system has no ACLs".to_owned(),
                };
                println!("{}: {how}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
