//! Assembly and serving. [`App::bind`] reads and validates every config file,
//! binds both listeners and builds every service; [`App::run_until_stopped`]
//! only serves until its signal and then runs the [`Shutdown`] drain.
//!
//! The gRPC port serves the messenger service, `grpc.health.v1` and
//! reflection (v1 and v1alpha); the metrics port serves Prometheus `/metrics`.
//! The messenger service's layers, outermost first: token auth
//! ([`crate::grpc::auth`]), admission ([`crate::grpc::admission`]: in-flight tracking and
//! `SendMessage` shedding), then the service itself. So a refused caller never
//! takes an admission permit, and a call counts as in flight from its headers.
//!
//! Every connection, on both ports, lives under the handshake and idle bounds
//! of [`messenger_runtime::conn`], which also serves the gRPC port
//! ([`conn::serve_grpc`]: hyper's HTTP/2 server, one task per connection);
//! the gRPC port's statuses follow [`crate::grpc::status_spec`].
//!
//! Security is opt-in: TLS on the whole port ([`crate::app::tls`]) and token auth
//! on the messenger service only, never on health or reflection.
//!
//! Invariant: every config file is read once, here, before any port is
//! taken; a file that cannot be used is an [`AppError::Config`].

mod build;
pub mod config;
mod error;
pub(crate) mod shutdown;
pub(crate) mod tls;

pub use error::{AppError, ConfigError};

use crate::core::broker::{BrokerConfigError, RedisEngine};
use crate::core::fanout::Fanout;
use crate::core::history::memory::Bounds;
use crate::core::hub::Hub;
use crate::core::publish::Publisher;
use crate::grpc::auth::{self, Auth};
use crate::grpc::reflection::Reflection;
use crate::grpc::service::MessengerService;
use crate::grpc::status_spec::{Spec, SpecLayer};
use crate::ops::metrics::{self, Metrics};
use build::{bind, broker_settings, grpc_settings, in_process, log_listening, messenger};
use config::Config;
use messenger_proto::SERVICE_NAME;
use messenger_proto::pb::messenger_server_server::MessengerServerServer;
use messenger_runtime::conn::{
    self, GrpcSettings, Guarded, Hygiene, LISTENER_GRPC, LISTENER_METRICS,
};
use messenger_runtime::metrics::Exporter;
use shutdown::Shutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_util::task::AbortOnDropHandle;
use tonic::service::Routes;
use tower::Layer;

/// Every service on the gRPC port under the status corrections of
/// [`crate::grpc::status_spec`]; [`conn::serve_grpc`] adds per-connection
/// request tracking for the idle bound and prompt shutdown.
type Port = Spec<Routes>;

/// Accepted gRPC connections, each under the port's [`Hygiene`].
type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<Guarded<TcpStream>>> + Send>>;

/// A bound, fully assembled, not yet serving messenger server.
pub struct App {
    config: Config,
    local_addr: SocketAddr,
    metrics_addr: SocketAddr,
    hub: Arc<Hub>,
    auth: Option<Auth>,
    tls: bool,
    grpc: Port,
    grpc_settings: GrpcSettings,
    grpc_hygiene: Hygiene,
    incoming: Incoming,
    metrics_listener: TcpListener,
    exporter: Arc<Exporter>,
    metrics: Arc<Metrics>,
    /// Reloads the tokens on SIGHUP while the app lives.
    reloader: Option<AbortOnDropHandle<()>>,
    /// Logs the debug dump on SIGUSR2 while the app lives.
    dumper: AbortOnDropHandle<()>,
    /// With the Redis engine: this replica's reader.
    reader: Option<AbortOnDropHandle<()>>,
    shutdown: Shutdown,
}

impl App {
    /// Reads the config files, binds the gRPC and metrics listeners and builds
    /// every service. Port 0 picks a free port; see [`App::local_addr`] and
    /// [`App::metrics_addr`].
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let tls = tls::server_config(&config).map_err(ConfigError::from)?;
        let auth = (config.auth_tokens_file.as_deref())
            .map(Auth::load)
            .transpose()
            .map_err(ConfigError::from)?;
        let grpc_settings = grpc_settings(&config, tls.clone());
        let (listener, local_addr) = bind(SocketAddr::new(config.host, config.port)).await?;
        let (metrics_listener, metrics_addr) =
            bind(SocketAddr::new(config.host, config.metrics_port)).await?;
        let history = Bounds {
            messages: config.history_size,
            bytes: config.history_bytes,
        };
        let hub = Hub::with_engine(
            config.subscriber_queue,
            config.max_subscribers,
            Box::new(in_process(&config, history)?),
        );
        let exporter = messenger_runtime::metrics::install(&metrics::buckets());
        let metrics = Arc::new(Metrics::new());
        conn::register_metrics(&[LISTENER_GRPC, LISTENER_METRICS]);
        let grpc_hygiene = Hygiene::new(config.conn, LISTENER_GRPC);
        let metrics_hygiene = Hygiene::new(config.conn, LISTENER_METRICS);
        let (health, health_service) = crate::grpc::health::health_reporter();
        let fanout = Arc::new(Fanout::new(
            Arc::clone(&hub),
            Arc::clone(&metrics),
            config.trace_deliver_spans_max,
        ));
        let broker = match (&config.broker_url, config.broker_tls_var()) {
            (Some(url), _) => Some(
                RedisEngine::new(broker_settings(&config, url, history))
                    .map_err(ConfigError::from)?,
            ),
            (None, None) => None,
            (None, Some(var)) => Err(ConfigError::from(BrokerConfigError::NoBroker { var }))?,
        };
        let mut shutdown = Shutdown::new(
            health.clone(),
            Arc::clone(&hub),
            config.shutdown_grace(),
            (grpc_hygiene.clone(), metrics_hygiene),
        );
        let reader = match &broker {
            None => {
                health
                    .set_serving::<MessengerServerServer<MessengerService>>()
                    .await;
                None
            }
            Some(broker) => {
                let reporter = tokio::spawn(health.follow(SERVICE_NAME, broker.watch_up()));
                shutdown.stop_on_drain(AbortOnDropHandle::new(reporter));
                let reader = broker.start(Arc::clone(&fanout)).await;
                Some(AbortOnDropHandle::new(reader))
            }
        };
        // The one choice of publisher: the broker when there is one, else
        // sequencing here.
        let publisher: Arc<dyn Publisher> = match broker {
            Some(broker) => broker,
            None => fanout,
        };
        let messenger = messenger(
            &config,
            (&hub, publisher),
            &metrics,
            &shutdown,
            auth.clone(),
        );
        let reflection = Reflection::standard()?;
        let routes = Routes::new(health_service)
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha())
            .add_service(messenger)
            .prepare();
        let grpc = SpecLayer {
            request_within: config.conn.handshake_timeout(),
            metrics: Arc::clone(&metrics),
        }
        .layer(routes);
        let incoming: Incoming = Box::pin(conn::grpc_incoming(
            listener,
            grpc_hygiene.clone(),
            config.keepalive_interval(),
        ));
        let wake = Arc::clone(&hub);
        let reloaded = move || wake.wake_all();
        let reloader = (auth.clone().map(|a| auth::reload_on_sighup(a, reloaded)))
            .transpose()
            .map_err(AppError::Signal)?
            .map(AbortOnDropHandle::new);
        let dumper = crate::ops::debug::log_on_sigusr2(Arc::clone(&hub), shutdown.in_flight())
            .map_err(AppError::DebugSignal)?;
        Ok(Self {
            config,
            local_addr,
            metrics_addr,
            hub,
            auth,
            tls: tls.is_some(),
            grpc,
            grpc_settings,
            grpc_hygiene,
            incoming,
            metrics_listener,
            exporter,
            metrics,
            reloader,
            dumper: AbortOnDropHandle::new(dumper),
            reader,
            shutdown,
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

    /// The tracker of admitted `SendMessage` calls, one token per call from
    /// its headers on; its `len()` is the in-flight count (tests wait on it).
    pub fn sends_in_flight(&self) -> tokio_util::task::TaskTracker {
        self.shutdown.in_flight()
    }

    /// Serves until `signal` completes, then drains ([`crate::app::shutdown`]).
    pub async fn run_until_stopped(self, signal: impl Future<Output = ()>) -> Result<(), AppError> {
        tokio::spawn(metrics::serve(
            self.metrics_listener,
            self.exporter,
            crate::ops::debug::router(Arc::clone(&self.hub)),
            self.shutdown.metrics_hygiene(),
        ));
        tokio::spawn(metrics::track_subscribers(
            self.hub.watch_open_streams(),
            self.metrics,
        ));
        let serve = conn::serve_grpc(
            self.incoming,
            self.grpc,
            self.grpc_settings,
            self.grpc_hygiene,
        );
        let mut server = tokio::spawn(serve);
        log_listening(
            &self.config,
            (self.local_addr, self.metrics_addr),
            self.tls,
            self.auth.as_ref(),
            &self.hub,
        );
        let (_reloader, _dumper, _reader) = (self.reloader, self.dumper, self.reader);
        tokio::select! {
            () = signal => {}
            result = &mut server => {
                shutdown::joined(result);
                return Ok(());
            }
        }
        self.shutdown.drain(server).await;
        tracing::info!("messenger-server stopped");
        Ok(())
    }
}
