//! The named builders [`App::bind`](super::App::bind) calls, each handed
//! only the part of the configuration it needs: the gRPC server, the
//! messenger service with its layers, the in-process history, the broker's
//! settings, a listener; and the one log line that says what is serving.

use super::AppError;
use super::config::{Config, ENV_STATE_DIR};
use super::shutdown::Shutdown;
use crate::core::broker::BrokerSettings;
use crate::core::history::memory::{Bounds, InProcess};
use crate::core::history::state::SendTimeMark;
use crate::core::hub::Hub;
use crate::core::publish::Publisher;
use crate::grpc::admission::Admission;
use crate::grpc::auth::Auth;
use crate::grpc::service::MessengerService;
use crate::ops::metrics::Metrics;
use messenger_proto::limits::Limits;
use messenger_proto::pb::messenger_server_server::MessengerServerServer;
use messenger_runtime::conn::GrpcSettings;
use messenger_runtime::tls::TlsAcceptor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use super::ConfigError;

/// The messenger service with its layers (see the module docs).
pub(super) type Messenger = Admission<MessengerServerServer<MessengerService>>;

/// The gRPC port's HTTP/2 keepalive and TLS.
pub(super) fn grpc_settings(config: &Config, tls: Option<TlsAcceptor>) -> GrpcSettings {
    GrpcSettings {
        keepalive_interval: config.keepalive_interval(),
        keepalive_timeout: config.keepalive_timeout(),
        tls,
    }
}

/// What the broker needs of `config`, with the local history's bounds.
pub(super) fn broker_settings(config: &Config, url: &str, history: Bounds) -> BrokerSettings {
    BrokerSettings {
        url: url.to_owned(),
        stream: config.broker_stream.clone(),
        ca: config.broker_ca.clone(),
        cert: config.broker_cert.clone(),
        key: config.broker_key.clone(),
        timeout: config.broker_timeout(),
        history,
        stream_bytes: config.broker_stream_bytes,
        min_replicas: config.broker_min_replicas,
    }
}

/// The in-process history within `history` (a Redis replica's local tail
/// too), with its `sendTime` mark when `MESSENGER_STATE_DIR` is set and no
/// broker is.
pub(super) fn in_process(config: &Config, history: Bounds) -> Result<InProcess, ConfigError> {
    let engine = InProcess::new(history);
    let dir = match (&config.state_dir, &config.broker_url) {
        (Some(dir), None) => dir,
        (Some(_), Some(_)) => {
            tracing::info!("{ENV_STATE_DIR} is not used with a broker: the broker stamps sendTime");
            return Ok(engine);
        }
        (None, Some(_)) => return Ok(engine),
        (None, None) => {
            tracing::info!(
                "{ENV_STATE_DIR} is not set: sendTime increases within this process only, and \
                 a restart on a clock that is behind stamps earlier than what clients hold; \
                 set it to a persistent directory to keep sendTime increasing across restarts"
            );
            return Ok(engine);
        }
    };
    let now = messenger_proto::time::unix_nanos_now();
    let mark = SendTimeMark::open(dir, now)?;
    let floor = mark.floor();
    if floor > now {
        tracing::warn!(
            behind_ms = ((floor - now) / 1_000_000) as i64,
            file = %mark.file().display(),
            "the clock is behind the sendTime mark of the previous run; sendTime continues \
             from the mark, strictly increasing, until the clock passes it"
        );
    } else {
        tracing::info!(file = %mark.file().display(), "sendTime mark loaded");
    }
    Ok(engine.with_mark(mark))
}

/// The messenger service over `hub`, sending through `publisher`.
pub(super) fn messenger(
    config: &Config,
    (hub, publisher): (&Arc<Hub>, Arc<dyn Publisher>),
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
    auth: Option<Auth>,
) -> Messenger {
    let limits = Limits {
        max_text_bytes: config.max_text_bytes,
        max_author_bytes: config.max_author_bytes,
    };
    let service = MessengerService::new(Arc::clone(hub), publisher, limits, Arc::clone(metrics));
    let service =
        MessengerServerServer::new(service).max_decoding_message_size(config.max_decoding_bytes());
    Admission::new(
        service,
        shutdown.in_flight(),
        config.max_concurrent_sends,
        auth,
    )
}

pub(super) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AppError> {
    let bind_err = |source| AppError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

pub(super) fn log_listening(
    config: &Config,
    (grpc_addr, metrics_addr): (SocketAddr, SocketAddr),
    tls: bool,
    auth: Option<&Auth>,
    hub: &Hub,
) {
    tracing::info!(
        grpc_addr = %grpc_addr,
        metrics_addr = %metrics_addr,
        trace_deliver_spans_max = config.trace_deliver_spans_max,
        subscriber_queue = config.subscriber_queue,
        max_text_bytes = config.max_text_bytes,
        max_author_bytes = config.max_author_bytes,
        max_subscribers = config.max_subscribers,
        max_concurrent_sends = config.max_concurrent_sends,
        history_size = config.history_size,
        history_bytes = config.history_bytes,
        state_dir = config.state_dir.as_deref().map(|d| d.display().to_string()),
        broker = config.broker_url.as_deref().map(crate::core::broker::redacted),
        broker_stream = config.broker_url.as_ref().map(|_| config.broker_stream.as_str()),
        epoch = %hub.epoch(),
        keepalive_interval_ms = config.keepalive_interval_ms,
        keepalive_timeout_ms = config.keepalive_timeout_ms,
        shutdown_grace_secs = config.shutdown_grace_secs,
        tls,
        mtls = tls && config.tls_client_ca.is_some(),
        auth_tokens = auth.map(Auth::tokens),
        "messenger-server listening"
    );
}
