//! Traces from the real binaries, received by an in-process OTLP collector:
//! one `POST /sendMessage` through client1 is one trace that runs through
//! client1's HTTP and gRPC spans, the server's RPC, fan-out and per-subscriber
//! delivery, and the `receive` span in each subscribed client; an incoming
//! `traceparent` becomes the root's parent; and nothing the exporter does
//! itself is exported.

use messenger_tests::otlp::{Attr, FlatSpan, OtlpReceiver, TraceParent};
use messenger_tests::procs::{ClientProc, ServerProc, spawn_client, spawn_server};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const RPC: &str = "mes_grpc.MessengerServer/SendMessage";
const HTTP: &str = "POST /sendMessage";
const SERVER: &str = "messenger-server";
const RECEIVERS: [&str; 2] = ["client1", "client2"];

/// The server and two clients, all exporting to one receiver.
struct Cluster {
    otlp: OtlpReceiver,
    server: ServerProc,
    client1: ClientProc,
    client2: ClientProc,
}

async fn start() -> Cluster {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let env = |service| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let server = spawn_server(&env(SERVER)).await;
    let client1 = spawn_client(server.grpc_addr, &env("client1")).await;
    let client2 = spawn_client(server.grpc_addr, &env("client2")).await;
    Cluster {
        otlp,
        server,
        client1,
        client2,
    }
}

impl Cluster {
    /// SIGTERM (clients first), each must exit 0; exporters flush on the way out.
    async fn stop(self) -> OtlpReceiver {
        for proc in [&self.client1.proc, &self.client2.proc, &self.server.proc] {
            assert_eq!(proc.sigterm_and_wait().await, Some(0), "{}", proc.tail());
        }
        self.otlp
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_send_is_one_trace_through_client_server_and_both_receivers() {
    let cluster = start().await;
    cluster.client1.send("alice", "traced").await;
    cluster
        .otlp
        .wait_check("the full tree of one send", |s| check_tree(s, None))
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incoming_traceparent_is_the_parent_of_the_http_span() {
    let cluster = start().await;
    let upstream = TraceParent::random();
    let header = upstream.header();
    let headers = [("traceparent", header.as_str())];
    cluster.client1.send_with("bob", "traced", &headers).await;
    cluster
        .otlp
        .wait_check("the tree under the upstream span", |s| {
            check_tree(s, Some(&upstream))
        })
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_exported_span_comes_from_the_exporter_stack() {
    let cluster = start().await;
    for i in 0..5 {
        cluster.client1.send("carol", &format!("{i}")).await;
        cluster.client2.send("dave", &format!("{i}")).await;
    }
    cluster.client1.collect(10).await;
    cluster.client2.collect(10).await;
    // Several export rounds have happened by now (100 ms schedule); shutdown
    // flushes whatever the last one left, including spans about exporting.
    cluster
        .otlp
        .wait_for("receive spans of all 10 messages in both clients", |s| {
            s.iter().filter(|s| s.name == "receive").count() >= 20
        })
        .await;
    let spans = cluster.stop().await.spans();
    let foreign: Vec<String> = spans
        .iter()
        .filter(|s| !is_ours(s))
        .map(FlatSpan::summary)
        .collect();
    assert!(
        foreign.is_empty(),
        "{} of {} exported spans are not ours:\n{}",
        foreign.len(),
        spans.len(),
        foreign.join("\n")
    );
}

/// The spec's tree for one send through client1; `upstream`, if given, is
/// the caller's context that must be the HTTP span's parent.
fn check_tree(spans: &[FlatSpan], upstream: Option<&TraceParent>) -> Result<(), String> {
    let http = one(spans.iter().filter(|s| {
        s.service == "client1"
            && s.name == HTTP
            && upstream.is_none_or(|u| s.trace_id == u.trace_id)
    }))
    .map_err(|e| format!("client1 '{HTTP}': {e}"))?;
    let parent = upstream.map_or("", |u| u.span_id.as_str());
    check_http(http, parent)?;
    let trace: Vec<&FlatSpan> = spans
        .iter()
        .filter(|s| s.trace_id == http.trace_id)
        .collect();
    let find = |service: &str, name: &str| {
        one(trace
            .iter()
            .copied()
            .filter(|s| s.service == service && s.name == name))
        .map_err(|e| format!("{service} '{name}' in trace {}: {e}", http.trace_id))
    };
    let client_rpc = find("client1", RPC)?;
    check_rpc(client_rpc, SpanKind::Client, &http.span_id)?;
    let server_rpc = find(SERVER, RPC)?;
    check_rpc(server_rpc, SpanKind::Server, &client_rpc.span_id)?;
    let fanout = find(SERVER, "fanout")?;
    check_span(fanout, SpanKind::Producer, &server_rpc.span_id)?;
    expect_attr(fanout, "messenger.subscribers", &Attr::Int(2))?;
    let delivers: Vec<&FlatSpan> = trace
        .iter()
        .copied()
        .filter(|s| s.name == "deliver")
        .collect();
    check_delivers(&delivers, &fanout.span_id)?;
    check_fanout_counts(fanout, &delivers)?;
    let mut parents = Vec::new();
    for client in RECEIVERS {
        let receive = find(client, "receive")?;
        check_kind(receive, SpanKind::Consumer)?;
        parents.push(receive.parent_span_id.as_str());
    }
    check_receive_parents(&parents, &delivers)
}

fn check_http(http: &FlatSpan, parent: &str) -> Result<(), String> {
    check_span(http, SpanKind::Server, parent)?;
    expect_attr(http, "http.request.method", &Attr::Str("POST".into()))?;
    expect_attr(http, "http.route", &Attr::Str("/sendMessage".into()))?;
    expect_attr(http, "http.response.status_code", &Attr::Int(200))
}

fn check_rpc(span: &FlatSpan, kind: SpanKind, parent: &str) -> Result<(), String> {
    check_span(span, kind, parent)?;
    expect_attr(span, "rpc.system", &Attr::Str("grpc".into()))?;
    expect_attr(
        span,
        "rpc.service",
        &Attr::Str("mes_grpc.MessengerServer".into()),
    )?;
    expect_attr(span, "rpc.method", &Attr::Str("SendMessage".into()))?;
    expect_attr(span, "rpc.grpc.status_code", &Attr::Int(0))
}

/// `fanout` ends with what its deliveries recorded: their count, and the
/// longest latency, which is one of its `deliver` spans' (both come from
/// the same measurement, in nanoseconds).
fn check_fanout_counts(fanout: &FlatSpan, delivers: &[&FlatSpan]) -> Result<(), String> {
    expect_attr(fanout, "messenger.delivered", &Attr::Int(2))?;
    let latency = |span: &FlatSpan| match span.attr("messenger.delivery_latency_seconds") {
        Some(Attr::Double(s)) => Ok(*s),
        other => Err(format!(
            "deliver messenger.delivery_latency_seconds: {other:?}"
        )),
    };
    let longest = delivers
        .iter()
        .map(|d| latency(d))
        .collect::<Result<Vec<f64>, String>>()?
        .into_iter()
        .fold(0.0, f64::max);
    match fanout.attr("messenger.max_delivery_latency_seconds") {
        Some(Attr::Double(max)) if (max - longest).abs() < 1e-9 => Ok(()),
        other => Err(format!(
            "fanout messenger.max_delivery_latency_seconds {other:?}, the longest deliver {longest}"
        )),
    }
}

/// One `deliver` per subscriber (2), under `fanout`, each naming its subscriber.
fn check_delivers(delivers: &[&FlatSpan], fanout: &str) -> Result<(), String> {
    if delivers.len() != 2 {
        return Err(format!(
            "want 2 server 'deliver' spans, have {}",
            delivers.len()
        ));
    }
    let mut ids = Vec::new();
    for deliver in delivers {
        if deliver.service != SERVER {
            return Err(format!(
                "'deliver' from {}, not the server",
                deliver.service
            ));
        }
        check_span(deliver, SpanKind::Internal, fanout)?;
        match deliver.attr("messenger.subscriber_id") {
            Some(Attr::Int(id)) => ids.push(*id),
            other => return Err(format!("deliver messenger.subscriber_id: {other:?}")),
        }
        match deliver.attr("messenger.delivery_latency_seconds") {
            Some(Attr::Double(s)) if *s >= 0.0 => {}
            other => return Err(format!("deliver delivery_latency_seconds: {other:?}")),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    (ids.len() == 2)
        .then_some(())
        .ok_or_else(|| format!("both deliver spans name subscriber {ids:?}"))
}

/// Each client's `receive` hangs under a different one of the `deliver` spans.
fn check_receive_parents(parents: &[&str], delivers: &[&FlatSpan]) -> Result<(), String> {
    for parent in parents {
        if !delivers.iter().any(|d| d.span_id == *parent) {
            return Err(format!(
                "a 'receive' span's parent {parent} is no 'deliver' span"
            ));
        }
    }
    (parents[0] != parents[1])
        .then_some(())
        .ok_or_else(|| format!("both 'receive' spans hang under deliver {}", parents[0]))
}

fn check_kind(span: &FlatSpan, kind: SpanKind) -> Result<(), String> {
    (span.kind == kind).then_some(()).ok_or_else(|| {
        let (service, name) = (&span.service, &span.name);
        format!("{service} '{name}' is {:?}, want {kind:?}", span.kind)
    })
}

fn check_span(span: &FlatSpan, kind: SpanKind, parent: &str) -> Result<(), String> {
    check_kind(span, kind)?;
    let actual = span.parent_span_id.trim_start_matches('0');
    if actual != parent.trim_start_matches('0') {
        return Err(format!(
            "{} '{}' has parent '{}', want '{parent}'",
            span.service, span.name, span.parent_span_id
        ));
    }
    Ok(())
}

fn expect_attr(span: &FlatSpan, key: &str, want: &Attr) -> Result<(), String> {
    match span.attr(key) {
        Some(have) if have == want => Ok(()),
        have => Err(format!(
            "{} '{}': {key} is {have:?}, want {want:?}",
            span.service, span.name
        )),
    }
}

/// Exactly one item, or why not.
fn one<'a>(mut found: impl Iterator<Item = &'a FlatSpan>) -> Result<&'a FlatSpan, String> {
    match (found.next(), found.next()) {
        (Some(span), None) => Ok(span),
        (None, _) => Err("not received (yet)".into()),
        (Some(_), Some(_)) => Err("received more than once".into()),
    }
}

/// Crates whose spans would be the transport or exporter tracing itself.
const FOREIGN: [&str; 7] = [
    "h2",
    "hyper",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "tokio",
];

/// A span of our own instrumentation: an HTTP route, an RPC, or one of the
/// hub's nouns, from a scope and source location that are not a dependency.
fn is_ours(span: &FlatSpan) -> bool {
    let name_ok = ["fanout", "deliver", "receive"].contains(&span.name.as_str())
        || is_http_name(&span.name)
        || is_rpc_name(&span.name);
    let module = ["code.namespace", "code.module.name", "target"]
        .iter()
        .find_map(|k| span.str_attr(k))
        .unwrap_or("");
    let file = ["code.filepath", "code.file.path"]
        .iter()
        .find_map(|k| span.str_attr(k))
        .unwrap_or("");
    name_ok
        && !FOREIGN
            .iter()
            .any(|c| from_crate(&span.scope, c) || from_crate(module, c))
        && !file.contains("/.cargo/registry/")
}

fn from_crate(path: &str, krate: &str) -> bool {
    path.strip_prefix(krate)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '_', '-', '.']))
}

fn is_http_name(name: &str) -> bool {
    name.split_once(' ').is_some_and(|(method, route)| {
        ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"].contains(&method)
            && route.starts_with('/')
    })
}

fn is_rpc_name(name: &str) -> bool {
    name.split_once('/').is_some_and(|(service, method)| {
        service.contains('.')
            && !method.is_empty()
            && !name.contains(' ')
            && method.chars().all(char::is_alphanumeric)
    })
}

#[test]
fn transport_and_exporter_spans_are_not_ours() {
    let span = |name: &str, scope: &str, module: &str| FlatSpan {
        service: SERVER.into(),
        resource: Default::default(),
        scope: scope.into(),
        trace_id: "1".repeat(32),
        span_id: "2".repeat(16),
        parent_span_id: String::new(),
        trace_state: String::new(),
        name: name.into(),
        kind: SpanKind::Internal,
        attrs: [("code.module.name".to_owned(), Attr::Str(module.into()))].into(),
    };
    assert!(is_ours(&span(
        "fanout",
        "messenger",
        "messenger_server::hub"
    )));
    assert!(is_ours(&span(
        HTTP,
        "messenger",
        "messenger_client::observe"
    )));
    assert!(is_ours(&span(
        RPC,
        "messenger",
        "messenger_server::service"
    )));
    assert!(!is_ours(&span("Connection", "messenger", "h2::proto")));
    assert!(!is_ours(&span("h2", "messenger", "")));
    assert!(!is_ours(&span(RPC, "messenger", "tonic::transport")));
    assert!(!is_ours(&span("export", "messenger", "opentelemetry_otlp")));
    assert!(!is_ours(&span("fanout", "tower-http", "")));
    assert!(is_ours(&span("fanout", "messenger", "h2o_app")));
}

/// A client that exports nothing still passes the caller's trace context on,
/// so a tracing server continues the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_tracing_client_still_propagates_the_callers_context() {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let server_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", SERVER),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let server = spawn_server(&server_env).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let upstream = TraceParent::random();
    let header = upstream.header();
    client
        .send_with(
            "frank",
            "untraced client",
            &[("traceparent", header.as_str())],
        )
        .await;
    let spans = otlp
        .wait_for("the server's SendMessage span", |s| {
            s.iter()
                .any(|s| s.name == "mes_grpc.MessengerServer/SendMessage" && s.service == SERVER)
        })
        .await;
    let send = spans
        .iter()
        .find(|s| s.name == "mes_grpc.MessengerServer/SendMessage")
        .unwrap();
    assert_eq!(send.trace_id, upstream.trace_id, "{}", send.summary());
    assert_eq!(send.parent_span_id, upstream.span_id, "{}", send.summary());
    assert_eq!(client.proc.sigterm_and_wait().await, Some(0));
    assert_eq!(server.proc.sigterm_and_wait().await, Some(0));
}
