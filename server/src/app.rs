//! Binding and serving: the messenger service, `grpc.health.v1` and
//! reflection (v1 and v1alpha) on one port, Prometheus `/metrics` on another,
//! and graceful shutdown.
//!
//! Shutdown order: health goes NOT_SERVING; the listener stops accepting and
//! connections get GOAWAY; in-flight `SendMessage` calls finish; the hub ends
//! every stream (after its queue drains) with UNAVAILABLE; the serve loop is
//! given what is left of the grace period to close connections.
//!
//! Security is opt-in: TLS on the whole port ([`crate::tls`]) and token auth
//! on the messenger service only ([`crate::auth`]), never on health or
//! reflection.

use crate::admission::Admission;
use crate::auth::{self, Auth, AuthError};
use crate::config::Config;
use crate::engine::memory::InProcess;
use crate::health::HealthReporter;
use crate::hub::Hub;
use crate::metrics::{self, Metrics};
use crate::reflection::Reflection;
use crate::service::{Limits, MessengerService};
use messenger_proto::SERVICE_NAME;
use messenger_proto::pb::messenger_server_server::MessengerServerServer;
use messenger_runtime::metrics::Exporter;
use messenger_runtime::tls::TlsError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("building reflection service: {0}")]
    Reflection(#[from] crate::reflection::index::IndexError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot install the SIGHUP handler for token reload: {0}")]
    Signal(std::io::Error),
    #[error("cannot install the SIGUSR2 handler for the debug dump: {0}")]
    DebugSignal(std::io::Error),
}

/// A bound, not yet serving, messenger server.
pub struct App {
    config: Config,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    hub: Arc<Hub>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    auth: Option<Auth>,
}

impl App {
    /// Binds the gRPC and metrics listeners. Port 0 picks a free port; see
    /// [`App::local_addr`] and [`App::metrics_addr`].
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let tls = crate::tls::server_config(&config)?;
        let auth = config
            .auth_tokens_file
            .as_deref()
            .map(Auth::load)
            .transpose()?;
        let (listener, local_addr) = bind(SocketAddr::new(config.host, config.port)).await?;
        let (metrics_listener, metrics_addr) =
            bind(SocketAddr::new(config.host, config.metrics_port)).await?;
        let engine = InProcess::new(config.history_bounds());
        let hub = Hub::with_engine(
            config.subscriber_queue,
            config.max_subscribers,
            Box::new(engine),
        );
        Ok(Self {
            config,
            listener,
            local_addr,
            metrics_listener,
            metrics_addr,
            hub,
            tls,
            auth,
        })
    }

    /// The token table, when auth is on (tests reload it directly).
    pub fn auth(&self) -> Option<Auth> {
        self.auth.clone()
    }

    /// Address of the Prometheus `/metrics` endpoint.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The fan-out hub, for inspection (subscriber count) by tests and tools.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        let Self {
            config,
            listener,
            local_addr,
            metrics_listener,
            metrics_addr,
            hub,
            tls,
            auth,
        } = self;
        let reloader = auth
            .clone()
            .map(auth::reload_on_sighup)
            .transpose()
            .map_err(AppError::Signal)?;
        let exporter = messenger_runtime::metrics::install(&metrics::buckets());
        let metrics = Arc::new(Metrics::new());
        let stop_metrics = CancellationToken::new();
        tokio::spawn(serve_metrics(
            metrics_listener,
            exporter,
            crate::debug::router(Arc::clone(&hub)),
            stop_metrics.clone(),
        ));
        tokio::spawn(track_subscribers(
            hub.watch_subscribers(),
            Arc::clone(&metrics),
        ));
        let (health, health_service) = crate::health::health_reporter();
        health
            .set_serving::<MessengerServerServer<MessengerService>>()
            .await;
        let in_flight = TaskTracker::new();
        let dumper = crate::debug::log_on_sigusr2(Arc::clone(&hub), in_flight.clone())
            .map_err(AppError::DebugSignal)?;
        let limits = Limits {
            max_text_bytes: config.max_text_bytes,
            max_author_bytes: config.max_author_bytes,
        };
        let messenger = MessengerServerServer::new(MessengerService::new(
            Arc::clone(&hub),
            limits,
            Arc::clone(&metrics),
            config.trace_deliver_spans_max,
        ))
        .max_decoding_message_size(config.max_decoding_bytes());
        // Admission counts a call as in flight from its headers on, before its
        // body is decoded, and sheds SendMessage past the limit; the token
        // check runs before it, so a refused caller never takes a permit.
        let messenger = Admission::new(
            messenger,
            in_flight.clone(),
            config.max_concurrent_sends,
            metrics,
        );
        let authenticator = auth.clone();
        let messenger =
            InterceptedService::new(messenger, move |mut request: tonic::Request<()>| {
                auth::intercept(authenticator.as_ref(), &mut request)?;
                Ok(request)
            });
        let stop_accepting = CancellationToken::new();
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(config.keepalive_interval()));
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config.keepalive_interval()))
            .http2_keepalive_timeout(Some(config.keepalive_timeout()));
        if let Some(tls) = tls.clone() {
            builder = builder.tls_config(tls)?;
        }
        let reflection = Reflection::standard()?;
        let server = builder
            .add_service(health_service)
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha())
            .add_service(messenger)
            .serve_with_incoming_shutdown(incoming, stop_accepting.clone().cancelled_owned());
        let mut server = tokio::spawn(server);
        tracing::info!(
            grpc_addr = %local_addr,
            metrics_addr = %metrics_addr,
            trace_deliver_spans_max = config.trace_deliver_spans_max,
            subscriber_queue = config.subscriber_queue,
            max_text_bytes = config.max_text_bytes,
            max_author_bytes = config.max_author_bytes,
            max_subscribers = config.max_subscribers,
            max_concurrent_sends = config.max_concurrent_sends,
            history_size = config.history_size,
            history_bytes = config.history_bytes,
            epoch = %hub.epoch(),
            keepalive_interval_ms = config.keepalive_interval_ms,
            keepalive_timeout_ms = config.keepalive_timeout_ms,
            shutdown_grace_secs = config.shutdown_grace_secs,
            tls = tls.is_some(),
            mtls = tls.is_some() && config.tls_client_ca.is_some(),
            auth_tokens = auth.as_ref().map(Auth::tokens),
            "messenger-server listening"
        );

        tokio::select! {
            () = shutdown => {}
            result = &mut server => return flatten(result),
        }
        let deadline = Instant::now() + config.shutdown_grace();
        set_not_serving(&health).await;
        stop_accepting.cancel();
        in_flight.close();
        if timeout_at(deadline, in_flight.wait()).await.is_err() {
            tracing::warn!("grace period ended with SendMessage calls still in flight");
        }
        hub.shutdown();
        match timeout_at(deadline, &mut server).await {
            Ok(result) => flatten(result)?,
            Err(_) => {
                server.abort();
                tracing::warn!(
                    grace_secs = config.shutdown_grace_secs,
                    "grace period ended; closing remaining connections"
                );
            }
        }
        stop_metrics.cancel();
        dumper.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        tracing::info!("messenger-server stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AppError> {
    let bind_err = |source| AppError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Serves `GET /metrics` and the `debug` routes until `stop`.
async fn serve_metrics(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    debug: axum::Router,
    stop: CancellationToken,
) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move { exporter.render() }),
        )
        .merge(debug);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics endpoint failed");
    }
}

/// Mirrors the hub's subscriber count into the `messenger_subscribers` gauge.
/// Ends when the hub is dropped.
async fn track_subscribers(mut count: tokio::sync::watch::Receiver<usize>, metrics: Arc<Metrics>) {
    loop {
        metrics.subscribers.set(*count.borrow_and_update() as f64);
        if count.changed().await.is_err() {
            return;
        }
    }
}

async fn set_not_serving(health: &HealthReporter) {
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    tracing::info!("health set to NOT_SERVING");
}

fn flatten(
    result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), AppError> {
    match result {
        Ok(inner) => Ok(inner?),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
