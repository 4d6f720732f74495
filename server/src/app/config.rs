//! Server configuration: every setting is a flag and an environment variable
//! (`ENV_*`), with a `DEFAULT_*`. [`Config::default`] never reads the
//! environment, so tests build configs without `set_var`.
//!
//! This module only parses: the files it names (TLS, tokens) are read and
//! validated once, by [`App::bind`](crate::App::bind), so it imports neither
//! `tls` nor `auth`.

use clap::Parser;
use messenger_runtime::cli::{ip_addr, number, port_of};
use messenger_runtime::conn::ConnLimits;
use messenger_runtime::telemetry::{ENV_LOG_FORMAT, LogFormat};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub const ENV_HOST: &str = "MESSENGER_SERVER_HOST";
pub const ENV_PORT: &str = "MESSENGER_SERVER_PORT";
pub const ENV_SUBSCRIBER_QUEUE: &str = "MESSENGER_SUBSCRIBER_QUEUE";
pub const ENV_MAX_TEXT_BYTES: &str = "MESSENGER_MAX_TEXT_BYTES";
pub const ENV_MAX_AUTHOR_BYTES: &str = "MESSENGER_MAX_AUTHOR_BYTES";
pub const ENV_SHUTDOWN_GRACE_SECS: &str = "MESSENGER_SHUTDOWN_GRACE_SECS";
pub const ENV_METRICS_PORT: &str = "MESSENGER_METRICS_PORT";
pub const ENV_TRACE_DELIVER_SPANS_MAX: &str = "MESSENGER_TRACE_DELIVER_SPANS_MAX";
pub const ENV_MAX_SUBSCRIBERS: &str = "MESSENGER_MAX_SUBSCRIBERS";
pub const ENV_MAX_CONCURRENT_SENDS: &str = "MESSENGER_MAX_CONCURRENT_SENDS";
pub const ENV_KEEPALIVE_INTERVAL_MS: &str = "MESSENGER_KEEPALIVE_INTERVAL_MS";
pub const ENV_KEEPALIVE_TIMEOUT_MS: &str = "MESSENGER_KEEPALIVE_TIMEOUT_MS";
// Defined with the TLS code, whose diagnoses name them too.
use messenger_runtime::tls::ClientTlsFiles;
pub use messenger_runtime::tls::{ENV_TLS_CERT, ENV_TLS_CLIENT_CA, ENV_TLS_KEY};
pub const ENV_AUTH_TOKENS_FILE: &str = "MESSENGER_AUTH_TOKENS_FILE";
pub const ENV_HISTORY_SIZE: &str = "MESSENGER_HISTORY_SIZE";
pub const ENV_HISTORY_BYTES: &str = "MESSENGER_HISTORY_BYTES";
pub const ENV_STATE_DIR: &str = "MESSENGER_STATE_DIR";
pub const ENV_BROKER_URL: &str = "MESSENGER_BROKER_URL";
pub const ENV_BROKER_STREAM: &str = "MESSENGER_BROKER_STREAM";
pub const ENV_BROKER_TIMEOUT_MS: &str = "MESSENGER_BROKER_TIMEOUT_MS";
pub const ENV_BROKER_STREAM_BYTES: &str = "MESSENGER_BROKER_STREAM_BYTES";
pub const ENV_BROKER_MIN_REPLICAS: &str = "MESSENGER_BROKER_MIN_REPLICAS";
pub const ENV_BROKER_CA: &str = "MESSENGER_BROKER_CA";
pub const ENV_BROKER_CERT: &str = "MESSENGER_BROKER_CERT";
pub const ENV_BROKER_KEY: &str = "MESSENGER_BROKER_KEY";

pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_PORT: u16 = 51075;
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 1024;
pub const DEFAULT_MAX_TEXT_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_AUTHOR_BYTES: usize = 256;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
pub const DEFAULT_METRICS_PORT: u16 = 9464;
/// 16 `deliver` spans keep a sampled message at K >= 16 to 18 spans, about
/// 60 µs of server CPU; 64 made it 66 spans and about 200 µs (ops/README.md,
/// "Tracing cost"), a third of the untraced cost of the message at K = 100.
pub const DEFAULT_TRACE_DELIVER_SPANS_MAX: usize = 16;
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 10_000;
pub const DEFAULT_MAX_CONCURRENT_SENDS: usize = 1024;
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 20_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_HISTORY_SIZE: usize = 100_000;
pub const DEFAULT_HISTORY_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_BROKER_STREAM: &str = "messenger:chat";
pub const DEFAULT_BROKER_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_BROKER_STREAM_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_BROKER_MIN_REPLICAS: u64 = 0;

/// Room above the two field limits when sizing the gRPC decoding limit, so a
/// field that is too long by up to this much is reported by validation (with
/// the field's name and limit) rather than by the codec's generic RESOURCE_EXHAUSTED.
/// It matches the client's default 1 MiB body limit.
pub const DECODE_HEADROOM_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "messenger-server",
    version,
    about = "gRPC messenger server (mes_grpc.MessengerServer)",
    after_help = messenger_runtime::telemetry::env_help()
)]
pub struct Config {
    /// Address to listen on for gRPC, health and reflection.
    #[arg(long, env = ENV_HOST, default_value_t = DEFAULT_HOST, value_parser = ip_addr)]
    pub host: IpAddr,

    /// gRPC port; 0 picks a free one (logged as grpc_addr=...).
    #[arg(long, env = ENV_PORT, default_value_t = DEFAULT_PORT, value_parser = number::<u16>(0, 65535))]
    pub port: u16,

    /// Messages each subscriber may have queued; a subscriber that falls this far
    /// behind is disconnected with RESOURCE_EXHAUSTED.
    #[arg(long, env = ENV_SUBSCRIBER_QUEUE, default_value_t = DEFAULT_SUBSCRIBER_QUEUE,
          value_parser = number::<usize>(1, 1_000_000))]
    pub subscriber_queue: usize,

    /// Largest accepted `text`, in bytes (UTF-8); larger gets INVALID_ARGUMENT.
    #[arg(long, env = ENV_MAX_TEXT_BYTES, default_value_t = DEFAULT_MAX_TEXT_BYTES,
          value_parser = number::<usize>(0, 16 * 1024 * 1024))]
    pub max_text_bytes: usize,

    /// Largest accepted `author`, in bytes (UTF-8); larger gets INVALID_ARGUMENT.
    #[arg(long, env = ENV_MAX_AUTHOR_BYTES, default_value_t = DEFAULT_MAX_AUTHOR_BYTES,
          value_parser = number::<usize>(0, 16 * 1024 * 1024))]
    pub max_author_bytes: usize,

    /// Seconds that shutdown may take before the process exits anyway.
    #[arg(long, env = ENV_SHUTDOWN_GRACE_SECS, default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS,
          value_parser = number::<u64>(0, 3600))]
    pub shutdown_grace_secs: u64,

    /// Port of the Prometheus `/metrics` endpoint (same host); 0 picks a free one.
    #[arg(long, env = ENV_METRICS_PORT, default_value_t = DEFAULT_METRICS_PORT,
          value_parser = number::<u16>(0, 65535))]
    pub metrics_port: u16,

    /// Most `deliver` spans per traced message; past it `fanout` keeps only aggregates.
    #[arg(long, env = ENV_TRACE_DELIVER_SPANS_MAX, default_value_t = DEFAULT_TRACE_DELIVER_SPANS_MAX,
          value_parser = number::<usize>(0, 100_000))]
    pub trace_deliver_spans_max: usize,

    /// Most concurrent `ReadMessages` streams; past it new ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = ENV_MAX_SUBSCRIBERS, default_value_t = DEFAULT_MAX_SUBSCRIBERS,
          value_parser = number::<usize>(1, 10_000_000))]
    pub max_subscribers: usize,

    /// Most `SendMessage` calls in flight (counted from their headers); past it
    /// new ones are shed at once with RESOURCE_EXHAUSTED instead of queueing.
    #[arg(long, env = ENV_MAX_CONCURRENT_SENDS, default_value_t = DEFAULT_MAX_CONCURRENT_SENDS,
          value_parser = number::<usize>(1, 1_000_000))]
    pub max_concurrent_sends: usize,

    /// Milliseconds between HTTP/2 keepalive PINGs (and the TCP keepalive
    /// idle time) on every connection; a peer that vanished without a FIN is
    /// dropped, with its subscriptions, within interval + timeout.
    #[arg(long, env = ENV_KEEPALIVE_INTERVAL_MS, default_value_t = DEFAULT_KEEPALIVE_INTERVAL_MS,
          value_parser = number::<u64>(100, 3_600_000))]
    pub keepalive_interval_ms: u64,

    /// Milliseconds to wait for a keepalive PING's acknowledgement.
    #[arg(long, env = ENV_KEEPALIVE_TIMEOUT_MS, default_value_t = DEFAULT_KEEPALIVE_TIMEOUT_MS,
          value_parser = number::<u64>(100, 3_600_000))]
    pub keepalive_timeout_ms: u64,

    /// Most messages kept in history for resuming subscribers
    /// (`messenger-since`); 0 keeps none, so a resume reports a gap unless nothing was missed.
    #[arg(long, env = ENV_HISTORY_SIZE, default_value_t = DEFAULT_HISTORY_SIZE,
          value_parser = number::<usize>(0, 100_000_000))]
    pub history_size: usize,

    /// Most bytes of history (author + text + traceparent + the encoded message + a fixed per-message
    /// overhead); whichever of the two bounds is hit first evicts the oldest.
    #[arg(long, env = ENV_HISTORY_BYTES, default_value_t = DEFAULT_HISTORY_BYTES,
          value_parser = number::<usize>(0, 1u64 << 40))]
    pub history_bytes: usize,

    /// In-process engine: a directory (created if missing) where the newest
    /// sendTime is kept across restarts, so sendTime keeps increasing even
    /// when the server restarts on a clock that is behind. Unset: sendTime
    /// increases only within one process.
    #[arg(long, env = ENV_STATE_DIR)]
    pub state_dir: Option<PathBuf>,

    /// Redis engine: `redis://host:port[/db]` or `rediss://...` (TLS). Unset:
    /// the in-process engine. Replicas with the same URL and stream share one chat.
    #[arg(long, env = ENV_BROKER_URL, value_parser = parse_broker_url)]
    pub broker_url: Option<String>,

    /// The Redis stream that holds the chat (its metadata key is `<stream>:meta`;
    /// on Redis Cluster give it a hash tag, e.g. `{messenger}:chat`).
    #[arg(long, env = ENV_BROKER_STREAM, default_value = DEFAULT_BROKER_STREAM,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub broker_stream: String,

    /// Most bytes the Redis stream holds (field names and values of its
    /// entries); the publish trims the oldest beyond it, as it does past
    /// max(MESSENGER_HISTORY_SIZE, 1000) entries. Keep it well below Redis
    /// maxmemory; a Redis out of memory makes the replica trim further.
    #[arg(long, env = ENV_BROKER_STREAM_BYTES, default_value_t = DEFAULT_BROKER_STREAM_BYTES,
          value_parser = number::<usize>(1024, 1u64 << 40))]
    pub broker_stream_bytes: usize,

    /// Redis replicas that must hold a message (Redis `WAIT`, on the
    /// publishing connection) before its send is acknowledged; 0 acknowledges
    /// once the primary has it. A wait that runs out answers UNAVAILABLE,
    /// outcome unknown.
    #[arg(long, env = ENV_BROKER_MIN_REPLICAS, default_value_t = DEFAULT_BROKER_MIN_REPLICAS,
          value_parser = number::<u64>(0, 64))]
    pub broker_min_replicas: u64,

    /// CA bundle (PEM) that signs the broker's certificate, for `rediss://`
    /// with a private CA; unset: the webpki and system roots.
    #[arg(long, env = ENV_BROKER_CA)]
    pub broker_ca: Option<PathBuf>,

    /// Client certificate chain (PEM) this server presents to a `rediss://`
    /// broker that asks for one (Redis `tls-auth-clients yes`, its default);
    /// set with `MESSENGER_BROKER_KEY`.
    #[arg(long, env = ENV_BROKER_CERT)]
    pub broker_cert: Option<PathBuf>,

    /// Private key (PEM) of `MESSENGER_BROKER_CERT`.
    #[arg(long, env = ENV_BROKER_KEY)]
    pub broker_key: Option<PathBuf>,

    /// Milliseconds a `SendMessage` may spend on the broker (publish, then this
    /// replica's delivery) before it answers UNAVAILABLE; also bounds each
    /// connection attempt.
    #[arg(long, env = ENV_BROKER_TIMEOUT_MS, default_value_t = DEFAULT_BROKER_TIMEOUT_MS,
          value_parser = number::<u64>(10, 600_000))]
    pub broker_timeout_ms: u64,

    /// Handshake and idle bounds of every connection we accept.
    #[command(flatten)]
    pub conn: ConnLimits,

    /// Log output format.
    #[arg(long, env = ENV_LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Server certificate chain (PEM); with --tls-key, serves gRPC over TLS only.
    #[arg(long, env = ENV_TLS_CERT)]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = ENV_TLS_KEY)]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) for client certificates; when set, clients must present one (mTLS).
    #[arg(long, env = ENV_TLS_CLIENT_CA)]
    pub tls_client_ca: Option<PathBuf>,

    /// File of `token author` lines; when set, both RPCs need `authorization: Bearer <token>`.
    /// Reloaded on SIGHUP.
    #[arg(long, env = ENV_AUTH_TOKENS_FILE)]
    pub auth_tokens_file: Option<PathBuf>,

    /// Without a subcommand, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the server on this host (its host and port settings) for
    /// grpc.health.v1 status; exit 0 when SERVING, 1 otherwise. For container
    /// health checks. Speaks TLS when the server does, with its own TLS
    /// flags: see `healthcheck --help`.
    Healthcheck(HealthcheckArgs),
}

/// What the probe needs beyond the server's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct HealthcheckArgs {
    /// The files the probe uses when the server serves TLS (the same
    /// variables as the messenger client's; the certificate is checked for
    /// the name `localhost`).
    #[command(flatten)]
    pub tls: ClientTlsFiles,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST,
            port: DEFAULT_PORT,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            max_author_bytes: DEFAULT_MAX_AUTHOR_BYTES,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            metrics_port: DEFAULT_METRICS_PORT,
            trace_deliver_spans_max: DEFAULT_TRACE_DELIVER_SPANS_MAX,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            max_concurrent_sends: DEFAULT_MAX_CONCURRENT_SENDS,
            keepalive_interval_ms: DEFAULT_KEEPALIVE_INTERVAL_MS,
            keepalive_timeout_ms: DEFAULT_KEEPALIVE_TIMEOUT_MS,
            history_size: DEFAULT_HISTORY_SIZE,
            history_bytes: DEFAULT_HISTORY_BYTES,
            state_dir: None,
            broker_url: None,
            broker_stream: DEFAULT_BROKER_STREAM.to_owned(),
            broker_stream_bytes: DEFAULT_BROKER_STREAM_BYTES,
            broker_min_replicas: DEFAULT_BROKER_MIN_REPLICAS,
            broker_ca: None,
            broker_cert: None,
            broker_key: None,
            broker_timeout_ms: DEFAULT_BROKER_TIMEOUT_MS,
            conn: ConnLimits::default(),
            log_format: LogFormat::Text,
            command: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_tokens_file: None,
        }
    }
}

impl Config {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    /// The first broker TLS variable that is set, if any: with no broker
    /// URL it would be ignored, which `App::bind` refuses.
    pub fn broker_tls_var(&self) -> Option<&'static str> {
        [
            (ENV_BROKER_CA, &self.broker_ca),
            (ENV_BROKER_CERT, &self.broker_cert),
            (ENV_BROKER_KEY, &self.broker_key),
        ]
        .into_iter()
        .find_map(|(var, file)| file.as_ref().map(|_| var))
    }

    pub fn broker_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_timeout_ms)
    }

    /// gRPC decoding limit for one request message.
    pub fn max_decoding_bytes(&self) -> usize {
        self.max_text_bytes + self.max_author_bytes + DECODE_HEADROOM_BYTES
    }
}

/// A `redis://` or `rediss://` URL the Redis client accepts, or a Sentinel URL
/// ([`SentinelUrl`](crate::core::broker::sentinel_url::SentinelUrl)); the error says
/// what form is expected (clap prints it naming the flag, exit 2).
fn parse_broker_url(url: &str) -> Result<String, String> {
    use crate::core::broker::sentinel_url::SentinelUrl;
    if SentinelUrl::is_sentinel(url) {
        return SentinelUrl::parse(url).map(|_| url.to_owned()).map_err(|e| {
            format!(
                "{e}; expected redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master-name>"
            )
        });
    }
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "rediss")) {
        return Err("expected redis://host:port[/db], rediss://host:port[/db], \
             redis+sentinel://host[:port][,host[:port]...]/<master-name> or rediss+sentinel://..."
            .to_owned());
    }
    // The port, when given, is checked here: the URL parser's "invalid port
    // number" does not say which port or what range.
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host_port.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host_port.contains(':'),
    };
    if has_port {
        port_of(host_port).map_err(|why| format!("{why}; expected redis://host:port[/db]"))?;
    }
    redis::Client::open(url)
        .map(|_| url.to_owned())
        .map_err(|e| format!("not a usable Redis URL ({e}); expected redis://host:port[/db]"))
}

#[cfg(test)]
mod tests;
