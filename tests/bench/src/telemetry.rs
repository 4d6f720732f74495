//! The suite's tracing runs: fanout K=100 with the server exporting spans to
//! a fresh `otlp-sink` per run, at 100% and at 10% head sampling, each
//! compared with the same run without export (`telemetry-off`, taken in the
//! same round). Each run's JSON gets the sink's `spans_received`.

use crate::procs::Proc;
use crate::rounds;
use crate::suite::Bins;
use serde_json::{Value, json};

/// Head sampling of 10% of the traces (the SDK's standard variables).
pub(crate) const SAMPLE_10PCT: [(&str, &str); 2] = [
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
];

/// The run `fanout(env)` with the server exporting spans (sampled per
/// `sampling`) to an `otlp-sink`; the sink's span count goes into the run's
/// JSON as `spans_received`.
pub(crate) fn on(
    bins: &Bins,
    sampling: &[(&str, &str)],
    fanout: impl FnOnce(&[(&str, &str)]) -> Value,
) -> Value {
    let sink = match Proc::spawn("otlp-sink", &bins.bench, &["otlp-sink"], &[]) {
        Ok(sink) => sink,
        Err(e) => return json!({ "error": e }),
    };
    let endpoint = match sink.wait_addr("otlp_addr") {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => return json!({ "error": e }),
    };
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    env.extend_from_slice(sampling);
    let mut value = fanout(&env);
    // The server exports its last batch on shutdown, before `stop` returns.
    if let (Some(map), Some(n)) = (value.as_object_mut(), sink_spans(sink)) {
        map.insert("spans_received".to_owned(), json!(n));
    }
    value
}

fn sink_spans(sink: Proc) -> Option<u64> {
    // SAFETY: kill(2) has no memory effects; the sink is our unreaped child.
    unsafe { libc::kill(sink.pid() as libc::pid_t, libc::SIGTERM) };
    let spans = sink.wait_value("spans_received").ok()?.parse().ok();
    sink.stop();
    spans
}

/// Spans the sink received over every round of `base`; `None` if any round
/// has no count.
pub(crate) fn spans(runs: &Value, base: &str) -> Option<u64> {
    rounds::names(runs, base)
        .iter()
        .map(|n| runs[n]["spans_received"].as_u64())
        .sum()
}
