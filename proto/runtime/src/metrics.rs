//! The Prometheus exporter both binaries use: one global `metrics` recorder
//! with per-histogram buckets, process metrics (CPU, RSS, fds, threads)
//! refreshed at each scrape, and gRPC code names as go-grpc-prometheus spells
//! them. A histogram on a per-delivery hot path is a [`ShardedHistogram`]
//! instead, rendered after the recorder's series.
//!
//! The recorder is process-global: the first [`install`] wins, later calls
//! (several apps in one test process) share it.

mod sharded;

pub use sharded::ShardedHistogram;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How often histogram samples are folded in when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Renders the exposition text for `/metrics`.
pub struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Exporter {
    /// Current exposition text, with process metrics refreshed first.
    pub fn render(&self) -> String {
        self.process.collect();
        let mut text = self.handle.render();
        for histogram in sharded::registered() {
            histogram.render(&mut text);
        }
        text
    }
}

static EXPORTER: OnceLock<Arc<Exporter>> = OnceLock::new();

/// Installs the global recorder with `buckets` per histogram name (never the
/// exporter's defaults), describes the process metrics and starts upkeep.
/// Must run inside a Tokio runtime.
pub fn install(buckets: &[(&str, &[f64])]) -> Arc<Exporter> {
    Arc::clone(EXPORTER.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for (name, bounds) in buckets {
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)
                .expect("bucket bounds are non-empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        let process = metrics_process::Collector::default();
        process.describe();
        process.collect();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Arc::new(Exporter { handle, process })
    }))
}

/// Exponential bucket bounds: `start`, `start*factor`, ... (`count` bounds).
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * factor))
        .take(count)
        .collect()
}

/// The `grpc_code` label value, spelled as Go's `codes.Code.String()`.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
