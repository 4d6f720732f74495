//! Start-up order and serving.
//!
//! [`App::start`] subscribes first and binds HTTP only once the first
//! subscription is registered, so a message sent through this client always
//! reaches its own buffer. HTTP connections live under the handshake and idle
//! bounds of [`messenger_runtime::conn`]. Shutdown stops accepting HTTP,
//! closes idle and unfinished connections at once, lets in-flight requests
//! finish within the grace period, then closes the stream.

use crate::api::router;
use crate::backend::{Backend, Subscriber};
use crate::buffer::Buffer;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::routes::AppState;
use messenger_runtime::conn::{self, ConnLimits, Hygiene, LISTENER_HTTP};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the stream subscriber stopped before subscribing")]
    SubscriberStopped,
    #[error(transparent)]
    Tls(#[from] messenger_runtime::tls::TlsError),
    #[error("{0}")]
    Token(String),
}

impl AppError {
    /// A setting that cannot work (TLS files, token): the process exits with
    /// the usage code, as for a bad flag, rather than as a runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Tls(_) | Self::Token(_))
    }
}

/// A subscribed client with its HTTP listener bound, not yet serving.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    subscriber: JoinHandle<()>,
    stop_subscriber: CancellationToken,
    grace: Duration,
    conn_limits: ConnLimits,
}

impl App {
    /// Reads the TLS files and checks the token (the only place either is
    /// read: a bad one is an [`AppError::is_config`] error before any
    /// connection), subscribes (retrying with backoff until the server
    /// answers), then binds HTTP.
    pub async fn start(config: Config) -> Result<Self, AppError> {
        let exporter = messenger_runtime::metrics::install(&metrics::buckets());
        let metrics = Metrics::new();
        metrics::cache_hot_path();
        conn::register_metrics(&[LISTENER_HTTP]);
        let tls = config.tls_files().load()?;
        let tls_on = tls.is_some() || config.server_addr.scheme_str() == Some("https");
        let authorization = config
            .client_token
            .as_ref()
            .map(crate::config::Token::metadata)
            .transpose()
            .map_err(AppError::Token)?;
        let token_on = authorization.is_some();
        // `/events` subscriptions get a connection of their own: a browser
        // that stops reading can hold HTTP/2 flow-control windows, and must
        // never hold the one the course stream and sends share. Each holds
        // at most a small stream window, and the connection's is large
        // enough for every stream's at once, so none holds another's.
        let tails = Backend::new(
            config.server_addr.clone(),
            config.send_timeout(),
            config.keepalive(),
            tls.clone(),
            authorization.clone(),
            Some(crate::events::windows(config.max_event_streams)),
        )?;
        let backend = Backend::new(
            config.server_addr.clone(),
            config.send_timeout(),
            config.keepalive(),
            tls,
            authorization,
            None,
        )?;
        let buffer = Arc::new(Buffer::new(config.buffer_limit, config.buffer_bytes));
        let (subscribed_tx, mut subscribed) = watch::channel(false);
        let (down_tx, down) = watch::channel(None);
        let stop_subscriber = CancellationToken::new();
        let subscriber = tokio::spawn(
            Subscriber {
                backend: backend.clone(),
                buffer: Arc::clone(&buffer),
                subscribed: subscribed_tx,
                down: down_tx,
                max_backoff: config.reconnect_max_backoff(),
                retry_log_interval: config.retry_log_interval(),
                stop: stop_subscriber.clone(),
                metrics,
            }
            .run(),
        );
        tracing::info!(server = backend.addr(), "subscribing before opening HTTP");
        if subscribed.wait_for(|s| *s).await.is_err() {
            return Err(AppError::SubscriberStopped);
        }

        let addr = SocketAddr::new(config.http_host, config.http_port);
        let bind_err = |source| AppError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let events = crate::events::EventStreams::new(tails, config.max_event_streams);
        let page = crate::page::Page::new(config.trace_ui_url.as_deref());
        let state = AppState {
            events,
            page,
            backend: Arc::new(backend),
            buffer,
            subscribed,
            down,
            max_body_bytes: config.max_body_bytes,
            exporter,
            http_timeout: config.http_timeout(),
            in_flight: crate::limits::InFlight::new(config.http_max_concurrency),
            allowed_hosts: crate::origin::AllowedHosts::new(&config.http_allowed_hosts),
        };
        tracing::info!(
            http_addr = %local_addr,
            server = %config.server_addr,
            buffer_limit = config.buffer_limit,
            buffer_bytes = config.buffer_bytes,
            send_timeout_ms = config.send_timeout_ms,
            max_body_bytes = config.max_body_bytes,
            http_timeout_ms = config.http_timeout_ms,
            http_max_concurrency = config.http_max_concurrency,
            keepalive_interval_ms = config.keepalive_interval_ms,
            keepalive_timeout_ms = config.keepalive_timeout_ms,
            max_event_streams = config.max_event_streams,
            trace_ui = config.trace_ui_url.is_some(),
            tls = tls_on,
            token = token_on,
            "messenger-client listening"
        );
        Ok(Self {
            listener,
            local_addr,
            state,
            subscriber,
            stop_subscriber,
            grace: config.shutdown_grace(),
            conn_limits: config.conn,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Watches whether the `ReadMessages` stream is open (what `/readyz` reports).
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.state.subscribed.clone()
    }

    /// Serves HTTP until `shutdown` completes, then drains and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            listener,
            state,
            subscriber,
            stop_subscriber,
            grace,
            conn_limits,
            ..
        } = self;
        let hygiene = Hygiene::new(conn_limits, LISTENER_HTTP);
        let events = state.events.clone();
        let mut serve = tokio::spawn(conn::serve_http(listener, router(state), hygiene.clone()));
        let result = tokio::select! {
            r = &mut serve => r,
            () = shutdown => {
                // Event streams end now (they never finish on their own);
                // idle connections close now, busy ones once answered.
                events.stop();
                hygiene.shutdown();
                let deadline = tokio::time::Instant::now() + grace;
                match conn::finish_by(&mut serve, &hygiene, deadline).await {
                    Some(r) => r,
                    None => {
                        tracing::warn!(grace_secs = grace.as_secs(), "grace period ended with HTTP requests in flight; closed them");
                        Ok(())
                    }
                }
            }
        };
        stop_subscriber.cancel();
        if let Err(e) = subscriber.await {
            tracing::error!(error = %e, "stream subscriber task failed");
        }
        tracing::info!("messenger-client stopped");
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}
