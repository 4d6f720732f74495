//! Client configuration: every setting is a flag and an environment variable
//! (`ENV_*`), with a `DEFAULT_*`. [`Config::default`] never reads the
//! environment, so tests build configs without `set_var`.

use clap::Parser;
use http::Uri;
use messenger_runtime::cli::{ip_addr, number, port_of};
use messenger_runtime::conn::ConnLimits;
use messenger_runtime::telemetry::{ENV_LOG_FORMAT, LogFormat};
use messenger_runtime::tls::ClientTlsFiles;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use token::parse_token;
pub use token::{MAX_TOKEN_BYTES, Token};

mod token;

// Defined with the TLS code, whose diagnoses name it too.
pub use messenger_runtime::tls::ENV_SERVER_ADDR;
pub const ENV_HTTP_HOST: &str = "MESSENGER_HTTP_HOST";
pub const ENV_HTTP_PORT: &str = "MESSENGER_HTTP_PORT";
pub const ENV_BUFFER_LIMIT: &str = "MESSENGER_CLIENT_BUFFER_LIMIT";
pub const ENV_BUFFER_BYTES: &str = "MESSENGER_CLIENT_BUFFER_BYTES";
pub const ENV_SEND_TIMEOUT_MS: &str = "MESSENGER_SEND_TIMEOUT_MS";
pub const ENV_MAX_BODY_BYTES: &str = "MESSENGER_MAX_BODY_BYTES";
pub const ENV_RECONNECT_MAX_BACKOFF_MS: &str = "MESSENGER_RECONNECT_MAX_BACKOFF_MS";
pub const ENV_SHUTDOWN_GRACE_SECS: &str = "MESSENGER_SHUTDOWN_GRACE_SECS";
pub const ENV_HTTP_TIMEOUT_MS: &str = "MESSENGER_HTTP_TIMEOUT_MS";
pub const ENV_HTTP_MAX_CONCURRENCY: &str = "MESSENGER_HTTP_MAX_CONCURRENCY";
pub const ENV_KEEPALIVE_INTERVAL_MS: &str = "MESSENGER_KEEPALIVE_INTERVAL_MS";
pub const ENV_KEEPALIVE_TIMEOUT_MS: &str = "MESSENGER_KEEPALIVE_TIMEOUT_MS";
pub const ENV_CLIENT_TOKEN: &str = "MESSENGER_CLIENT_TOKEN";
pub const ENV_RETRY_LOG_INTERVAL_MS: &str = "MESSENGER_RETRY_LOG_INTERVAL_MS";
pub const ENV_MAX_EVENT_STREAMS: &str = "MESSENGER_MAX_EVENT_STREAMS";
pub const ENV_TRACE_UI_URL: &str = "MESSENGER_TRACE_UI_URL";
pub const ENV_HTTP_ALLOWED_HOSTS: &str = "MESSENGER_HTTP_ALLOWED_HOSTS";

pub const DEFAULT_SERVER_ADDR: &str = "localhost:51075";
pub const DEFAULT_HTTP_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_HTTP_PORT: u16 = 8080;
pub const DEFAULT_BUFFER_LIMIT: usize = 100_000;
/// The server's default history (`MESSENGER_HISTORY_BYTES`): between two
/// flushes the buffer holds no more than a resume could replay; 100,000
/// messages of 64 KiB would be 6.4 GB.
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_RECONNECT_MAX_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Above the default send deadline, so a slow server still gets its own 504.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_HTTP_MAX_CONCURRENCY: usize = 1024;
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_RETRY_LOG_INTERVAL_MS: u64 = 30_000;
/// Each `/events` stream is a subscriber of the server's too.
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 256;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "messenger-client",
    version,
    about = "HTTP front for the messenger: buffers the stream, forwards sends",
    long_about = long_about(),
    after_help = messenger_runtime::telemetry::env_help()
)]
pub struct Config {
    /// Messenger server, as host:port, http://host:port or https://host:port
    /// (https, or any TLS file below, means TLS).
    #[arg(long, env = ENV_SERVER_ADDR, default_value = DEFAULT_SERVER_ADDR, value_parser = parse_server_addr)]
    pub server_addr: Uri,

    /// Address to serve HTTP on.
    #[arg(long, env = ENV_HTTP_HOST, default_value_t = DEFAULT_HTTP_HOST, value_parser = ip_addr)]
    pub http_host: IpAddr,

    /// HTTP port; 0 picks a free one (logged as http_addr=...).
    #[arg(long, env = ENV_HTTP_PORT, default_value_t = DEFAULT_HTTP_PORT, value_parser = number::<u16>(0, 65535))]
    pub http_port: u16,

    /// Most messages buffered between flushes; past it the oldest are dropped.
    #[arg(long, env = ENV_BUFFER_LIMIT, default_value_t = DEFAULT_BUFFER_LIMIT,
          value_parser = number::<usize>(1, 100_000_000))]
    pub buffer_limit: usize,

    /// Most bytes of messages buffered between flushes (author, text,
    /// sendTime and 64 each); past it the oldest are dropped.
    #[arg(long, env = ENV_BUFFER_BYTES, default_value_t = DEFAULT_BUFFER_BYTES,
          value_parser = number::<usize>(1024, 1 << 40))]
    pub buffer_bytes: usize,

    /// Deadline for one SendMessage call, in milliseconds.
    #[arg(long, env = ENV_SEND_TIMEOUT_MS, default_value_t = DEFAULT_SEND_TIMEOUT_MS,
          value_parser = number::<u64>(1, 600_000))]
    pub send_timeout_ms: u64,

    /// Largest accepted HTTP request body, in bytes; larger gets 413.
    #[arg(long, env = ENV_MAX_BODY_BYTES, default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = number::<usize>(1, 64 * 1024 * 1024))]
    pub max_body_bytes: usize,

    /// Cap of the jittered exponential backoff between subscription attempts, in ms.
    #[arg(long, env = ENV_RECONNECT_MAX_BACKOFF_MS, default_value_t = DEFAULT_RECONNECT_MAX_BACKOFF_MS,
          value_parser = number::<u64>(10, 600_000))]
    pub reconnect_max_backoff_ms: u64,

    /// While subscribing keeps failing the same way, the failure is logged
    /// again (with the attempts so far) once per this many ms.
    #[arg(long, env = ENV_RETRY_LOG_INTERVAL_MS, default_value_t = DEFAULT_RETRY_LOG_INTERVAL_MS,
          value_parser = number::<u64>(100, 3_600_000))]
    pub retry_log_interval_ms: u64,

    /// Seconds that shutdown may take before the process exits anyway.
    #[arg(long, env = ENV_SHUTDOWN_GRACE_SECS, default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS,
          value_parser = number::<u64>(0, 3600))]
    pub shutdown_grace_secs: u64,

    /// Deadline for a whole HTTP request (body included), in ms; past it the answer is 504.
    #[arg(long, env = ENV_HTTP_TIMEOUT_MS, default_value_t = DEFAULT_HTTP_TIMEOUT_MS,
          value_parser = number::<u64>(1, 3_600_000))]
    pub http_timeout_ms: u64,

    /// Most API requests in flight; past it requests are shed with 503 and Retry-After.
    #[arg(long, env = ENV_HTTP_MAX_CONCURRENCY, default_value_t = DEFAULT_HTTP_MAX_CONCURRENCY,
          value_parser = number::<usize>(1, 1_000_000))]
    pub http_max_concurrency: usize,

    /// HTTP/2 PING interval on the connection to the server, in ms (also while idle).
    #[arg(long, env = ENV_KEEPALIVE_INTERVAL_MS, default_value_t = DEFAULT_KEEPALIVE_INTERVAL_MS,
          value_parser = number::<u64>(10, 3_600_000))]
    pub keepalive_interval_ms: u64,

    /// How long a PING may go unanswered before the connection is dropped, in ms.
    #[arg(long, env = ENV_KEEPALIVE_TIMEOUT_MS, default_value_t = DEFAULT_KEEPALIVE_TIMEOUT_MS,
          value_parser = number::<u64>(10, 3_600_000))]
    pub keepalive_timeout_ms: u64,

    /// Most `GET /events` streams open at once (each one its own subscriber on
    /// the server); past it the answer is 503 with Retry-After.
    #[arg(long, env = ENV_MAX_EVENT_STREAMS, default_value_t = DEFAULT_MAX_EVENT_STREAMS,
          value_parser = number::<usize>(0, 100_000))]
    pub max_event_streams: usize,

    /// Trace viewer URL the page links each message's trace to, the trace id
    /// appended (e.g. Jaeger's http://localhost:16686/trace/); unset: no links.
    #[arg(long, env = ENV_TRACE_UI_URL, value_parser = parse_trace_ui_url)]
    pub trace_ui_url: Option<String>,

    /// Host names (comma-separated, no port) a browser may reach this
    /// client's POST routes by, beyond `localhost` and IP addresses, e.g. a
    /// proxy's name. A browser's request for another name is refused, so a
    /// rebound DNS name cannot reach the client (`crate::origin`).
    #[arg(long, env = ENV_HTTP_ALLOWED_HOSTS, value_delimiter = ',',
          value_parser = crate::origin::parse_host_name)]
    pub http_allowed_hosts: Vec<String>,

    /// Handshake and idle bounds of every connection we accept.
    #[command(flatten)]
    pub conn: ConnLimits,

    /// Log output format.
    #[arg(long, env = ENV_LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The TLS files for the connection to the server.
    #[command(flatten)]
    pub tls: ClientTlsFiles,

    /// Bearer token sent on every call to the server. Prefer the variable:
    /// a flag shows in `ps`.
    #[arg(long, env = ENV_CLIENT_TOKEN, hide_env_values = true, value_parser = parse_token)]
    pub client_token: Option<Token>,

    /// Without a subcommand, the client runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// GET /readyz on this host's MESSENGER_HTTP_PORT; exit 0 on 200, 1
    /// otherwise. For container health checks.
    Healthcheck,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_addr: parse_server_addr(DEFAULT_SERVER_ADDR).expect("default address is valid"),
            http_host: DEFAULT_HTTP_HOST,
            http_port: DEFAULT_HTTP_PORT,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            reconnect_max_backoff_ms: DEFAULT_RECONNECT_MAX_BACKOFF_MS,
            retry_log_interval_ms: DEFAULT_RETRY_LOG_INTERVAL_MS,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            http_timeout_ms: DEFAULT_HTTP_TIMEOUT_MS,
            http_max_concurrency: DEFAULT_HTTP_MAX_CONCURRENCY,
            keepalive_interval_ms: DEFAULT_KEEPALIVE_INTERVAL_MS,
            keepalive_timeout_ms: DEFAULT_KEEPALIVE_TIMEOUT_MS,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
            trace_ui_url: None,
            http_allowed_hosts: Vec::new(),
            conn: ConnLimits::default(),
            log_format: LogFormat::Text,
            command: None,
            tls: ClientTlsFiles::default(),
            client_token: None,
        }
    }
}

impl Config {
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }
    pub fn reconnect_max_backoff(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_backoff_ms)
    }
    pub fn retry_log_interval(&self) -> Duration {
        Duration::from_millis(self.retry_log_interval_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }
    pub fn keepalive(&self) -> crate::backend::Keepalive {
        crate::backend::Keepalive {
            interval: Duration::from_millis(self.keepalive_interval_ms),
            timeout: Duration::from_millis(self.keepalive_timeout_ms),
        }
    }
    pub fn tls_files(&self) -> ClientTlsFiles {
        self.tls.clone()
    }
}

/// `--help`'s description: when the port opens, and what it serves.
fn long_about() -> String {
    format!(
        "HTTP front for the messenger: buffers the stream, forwards sends.\n\n\
         It subscribes to the server's ReadMessages stream first and opens its HTTP port \
         ({ENV_HTTP_PORT}) only once subscribed, so that a message sent through it always \
         reaches its own buffer. Until then the port is closed, and the log says again \
         periodically why it cannot subscribe.\n\n\
         Routes: {}.",
        crate::paths::routes_line()
    )
}

/// Accepts `host:port` (as the course's env var has it), `http://host:port`
/// or `https://host:port`.
pub fn parse_server_addr(s: &str) -> Result<Uri, String> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| format!("{s:?} is not host:port: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{s:?}: the scheme must be http:// or https://"));
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    port_of(authority)
        .map_err(|why| format!("{s:?} {why}; use host:port, e.g. localhost:51075"))?;
    Ok(uri)
}

/// An `http://` or `https://` URL the trace id is appended to.
pub fn parse_trace_ui_url(s: &str) -> Result<String, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "{s:?}: expected http(s)://host/..., e.g. http://localhost:16686/trace/"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addr_forms() {
        assert_eq!(
            parse_server_addr("localhost:51075").unwrap().to_string(),
            "http://localhost:51075/"
        );
        assert!(parse_server_addr("http://10.0.0.1:1").is_ok());
        assert!(parse_server_addr("https://server:51075").is_ok());
        assert!(parse_server_addr("localhost").is_err());
        assert!(parse_server_addr("ftp://x:1").is_err());
        assert!(parse_server_addr("a b:1").is_err());
        let out_of_range = parse_server_addr("127.0.0.1:99999").unwrap_err();
        assert!(
            out_of_range.contains("port 99999 is out of range"),
            "{out_of_range}"
        );
        assert!(
            parse_server_addr("localhost")
                .unwrap_err()
                .contains("has no port")
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::try_parse_from(["c", "--http-port", "x"]).is_err());
        assert!(Config::try_parse_from(["c", "--buffer-limit", "0"]).is_err());
        assert!(Config::try_parse_from(["c", "--trace-ui-url", "javascript:alert(1)"]).is_err());
        assert!(Config::try_parse_from(["c", "--trace-ui-url", "/trace/"]).is_err());
        assert!(
            Config::try_parse_from(["c", "--trace-ui-url", "http://localhost:16686/trace/"])
                .is_ok()
        );
    }
}
