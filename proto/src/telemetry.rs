//! Log output for both binaries: `tracing-subscriber` filtered by `RUST_LOG`
//! (default `info`), as human text or one JSON object per line.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, fmt};

/// `MESSENGER_LOG_FORMAT`.
pub const ENV_LOG_FORMAT: &str = "MESSENGER_LOG_FORMAT";

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Later calls (tests running several apps in
/// one process) keep the first one.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter);
    let _already_set = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
