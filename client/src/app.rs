//! Start-up order and serving.
//!
//! [`App::start`] subscribes first and binds HTTP only once the first
//! subscription is registered, so a message sent through this client always
//! reaches its own buffer. Shutdown stops accepting HTTP, lets in-flight
//! requests finish within the grace period, then closes the stream.

use crate::backend::{Backend, run_subscriber};
use crate::buffer::Buffer;
use crate::config::Config;
use crate::routes::{AppState, router};
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
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A subscribed client with its HTTP listener bound, not yet serving.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    subscriber: JoinHandle<()>,
    stop_subscriber: CancellationToken,
    grace: Duration,
}

impl App {
    /// Subscribes (retrying with backoff until the server answers), then binds HTTP.
    pub async fn start(config: Config) -> Result<Self, AppError> {
        let backend = Backend::new(config.server_addr.clone(), config.send_timeout());
        let buffer = Arc::new(Buffer::new(config.buffer_limit));
        let (subscribed_tx, mut subscribed) = watch::channel(false);
        let stop_subscriber = CancellationToken::new();
        let subscriber = tokio::spawn(run_subscriber(
            backend.clone(),
            Arc::clone(&buffer),
            subscribed_tx,
            config.reconnect_max_backoff(),
            stop_subscriber.clone(),
        ));
        tracing::info!(server = backend.addr(), "subscribing before opening HTTP");
        // The sender lives in the subscriber task, which only returns when stopped.
        let _ = subscribed.wait_for(|s| *s).await;

        let addr = SocketAddr::new(config.http_host, config.http_port);
        let bind_err = |source| AppError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let state = AppState {
            backend,
            buffer,
            subscribed,
            max_body_bytes: config.max_body_bytes,
        };
        tracing::info!(
            http_addr = %local_addr,
            server = %config.server_addr,
            buffer_limit = config.buffer_limit,
            send_timeout_ms = config.send_timeout_ms,
            max_body_bytes = config.max_body_bytes,
            "messenger-client listening"
        );
        Ok(Self {
            listener,
            local_addr,
            state,
            subscriber,
            stop_subscriber,
            grace: config.shutdown_grace(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
            ..
        } = self;
        let (draining_tx, draining) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = draining_tx.send(());
        };
        let mut serve = tokio::spawn(
            axum::serve(listener, router(state))
                .with_graceful_shutdown(signal)
                .into_future(),
        );
        let result = tokio::select! {
            r = &mut serve => r,
            _ = draining => match tokio::time::timeout(grace, &mut serve).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(grace_secs = grace.as_secs(), "grace period ended with HTTP requests in flight");
                    serve.abort();
                    Ok(Ok(()))
                }
            },
        };
        stop_subscriber.cancel();
        let _ = subscriber.await;
        tracing::info!("messenger-client stopped");
        match result {
            Ok(r) => r.map_err(AppError::Serve),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}
