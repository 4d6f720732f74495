//! Spawn helpers for the end-to-end tests: the real server and client
//! libraries in-process on `127.0.0.1:0`, raw gRPC subscribers, and HTTP calls.
//!
//! Readiness is always an event: `App::bind` has bound, `App::start` has
//! subscribed, a stream's response headers have arrived, or the hub's
//! subscriber count has changed. Every wait is bounded by [`WAIT`].

pub mod certs;
pub mod http1;
pub mod otlp;
pub mod procs;
pub mod prom;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod sentinel;
pub mod w3c;

use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_proto::pb::{SendMessageRequest, ServerMessageResponse};
use messenger_proto::time::format_rfc3339;
use messenger_server::core::hub::Hub;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A message as every subscriber should see it: (author, text, sendTime).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct Msg {
    pub author: String,
    pub text: String,
    #[serde(rename = "sendTime")]
    pub send_time: String,
}

impl From<ServerMessageResponse> for Msg {
    fn from(m: ServerMessageResponse) -> Self {
        let send_time = m
            .send_time
            .as_ref()
            .and_then(format_rfc3339)
            .expect("valid sendTime");
        Self {
            author: m.author,
            text: m.text,
            send_time,
        }
    }
}

/// Fails the test with `what` if `fut` does not finish within [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// Polls `probe` every 20 ms until it returns `Some`, failing after `limit`.
/// Returns the value and how long it took. For conditions that have no event
/// to wait on (an HTTP status, a health status, a metric in another process).
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    /// The token table, when the config enables token auth.
    pub auth: Option<messenger_server::grpc::auth::Auth>,
    /// Admitted `SendMessage` calls (see `App::sends_in_flight`).
    pub sends_in_flight: tokio_util::task::TaskTracker,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), messenger_server::AppError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on 127.0.0.1:0 after `tweak` adjusts its config.
    pub async fn start_with(tweak: impl FnOnce(&mut messenger_server::Config)) -> Self {
        let mut config = messenger_server::Config {
            host: Ipv4Addr::LOCALHOST.into(),
            port: 0,
            metrics_port: 0,
            ..Default::default()
        };
        tweak(&mut config);
        let app = messenger_server::App::bind(config)
            .await
            .expect("server binds");
        let (addr, hub, auth) = (app.local_addr(), app.hub(), app.auth());
        let sends_in_flight = app.sends_in_flight();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hub,
            auth,
            sends_in_flight,
            stop: Some(stop),
            task,
        }
    }

    /// Triggers graceful shutdown and waits for it to finish.
    pub async fn stop(mut self) -> Result<(), messenger_server::AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("server shutdown", &mut self.task)
            .await
            .expect("server task")
    }

    /// A gRPC client on a fresh HTTP/2 connection.
    pub async fn grpc(&self) -> MessengerServerClient<Channel> {
        connect(self.addr).await
    }

    /// Opens `ReadMessages` on its own connection; returns once headers arrived.
    pub async fn subscribe(&self) -> Streaming<ServerMessageResponse> {
        subscribe_at(self.addr).await
    }

    /// Waits until the hub holds exactly `n` subscribers.
    pub async fn wait_subscribers(&self, n: usize) {
        let mut rx = self.hub.watch_subscribers();
        within(&format!("{n} subscribers"), rx.wait_for(|c| *c == n))
            .await
            .expect("hub alive");
    }
}

/// A gRPC client for the server at `addr`, on a fresh HTTP/2 connection.
pub async fn connect(addr: SocketAddr) -> MessengerServerClient<Channel> {
    connect_with(addr, |endpoint| endpoint).await
}

/// [`connect`], with the endpoint's settings changed by `settings`.
async fn connect_with(
    addr: SocketAddr,
    settings: impl FnOnce(Endpoint) -> Endpoint,
) -> MessengerServerClient<Channel> {
    let endpoint = Channel::from_shared(format!("http://{addr}")).expect("valid URI");
    let channel = within("connect to server", settings(endpoint).connect())
        .await
        .expect("connect to server");
    MessengerServerClient::new(channel)
}

/// Opens `ReadMessages` on its own connection; returns once headers arrived.
pub async fn subscribe_at(addr: SocketAddr) -> Streaming<ServerMessageResponse> {
    read_messages(connect(addr).await).await
}

/// Opens `ReadMessages` on its own connection with an HTTP/2 stream window
/// of `window` bytes, for a subscriber that never reads: the server can
/// write `window` bytes of it, then none. Returns once headers arrived
/// (not flow-controlled).
pub async fn subscribe_stalled(addr: SocketAddr, window: u32) -> Streaming<ServerMessageResponse> {
    let client = connect_with(addr, |e| e.initial_stream_window_size(window)).await;
    read_messages(client).await
}

/// `ReadMessages` on `client`, once its headers arrived.
async fn read_messages(
    mut client: MessengerServerClient<Channel>,
) -> Streaming<ServerMessageResponse> {
    within("ReadMessages headers", client.read_messages(()))
        .await
        .expect("subscribe")
        .into_inner()
}

/// A channel to `addr` over TLS with `files` (CA, optional client identity),
/// connected; the error is the handshake's or the connection's.
pub async fn tls_channel(
    addr: SocketAddr,
    files: &messenger_runtime::tls::ClientTlsFiles,
) -> Result<Channel, tonic::transport::Error> {
    let tls = files.load().expect("test TLS files load");
    let uri = format!("https://{addr}").parse().expect("valid URI");
    let endpoint = messenger_runtime::tls::endpoint(uri, tls).expect("TLS endpoint");
    within("TLS connect", endpoint.connect()).await
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("ASCII token");
    request
        .metadata_mut()
        .insert(messenger_proto::AUTHORIZATION_METADATA, value);
    request
}

/// Sends one message over gRPC and returns its sendTime string.
pub async fn grpc_send(
    client: &mut MessengerServerClient<Channel>,
    author: &str,
    text: &str,
) -> Result<String, Status> {
    let request = SendMessageRequest {
        author: author.into(),
        text: text.into(),
    };
    let response = client.send_message(request).await?.into_inner();
    Ok(format_rfc3339(&response.send_time.expect("sendTime set")).expect("valid sendTime"))
}

/// Reads exactly `n` messages from a stream.
pub async fn read_n(stream: &mut Streaming<ServerMessageResponse>, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    within(&format!("{n} stream messages"), async {
        while out.len() < n {
            match stream.message().await {
                Ok(Some(m)) => out.push(Msg::from(m)),
                other => panic!(
                    "stream ended after {} of {n} messages: {other:?}",
                    out.len()
                ),
            }
        }
    })
    .await;
    out
}

pub struct TestClient {
    pub base: String,
    pub http: reqwest::Client,
    /// Whether the client's stream is open (what its `/readyz` reports).
    pub subscribed: tokio::sync::watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), messenger_client::AppError>>,
}

impl TestClient {
    pub async fn start(server: SocketAddr) -> Self {
        Self::start_with(server, |_| {}).await
    }

    /// Starts a client for `server`; returns once it is subscribed and listening.
    pub async fn start_with(
        server: SocketAddr,
        tweak: impl FnOnce(&mut messenger_client::Config),
    ) -> Self {
        let mut config = messenger_client::Config {
            server_addr: messenger_client::config::parse_server_addr(&server.to_string()).unwrap(),
            http_host: Ipv4Addr::LOCALHOST.into(),
            http_port: 0,
            ..Default::default()
        };
        tweak(&mut config);
        let app = within("client start", messenger_client::App::start(config))
            .await
            .expect("client starts");
        let base = format!("http://{}", app.local_addr());
        let subscribed = app.subscribed();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            subscribed,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("client shutdown", &mut self.task)
            .await
            .expect("client task")
            .expect("client ran");
    }

    /// `GET path`; returns status and parsed JSON.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = within(path, self.http.get(format!("{}{path}", self.base)).send())
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// `POST path` with a raw body; returns status and parsed JSON.
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let response = within(
            path,
            self.http
                .post(format!("{}{path}", self.base))
                .body(body)
                .send(),
        )
        .await
        .expect("HTTP request");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Sends through `/sendMessage`; returns the sendTime string.
    pub async fn send(&self, author: &str, text: &str) -> String {
        let body = serde_json::json!({ "author": author, "text": text }).to_string();
        let (status, json) = self.post("/sendMessage", body).await;
        assert_eq!(status, 200, "sendMessage failed: {json}");
        json["sendTime"]
            .as_str()
            .expect("sendTime string")
            .to_owned()
    }

    pub async fn flush(&self) -> Vec<Msg> {
        let (status, json) = self.post("/getAndFlushMessages", "").await;
        assert_eq!(status, 200);
        serde_json::from_value(json).expect("array of messages")
    }

    /// Flushes until `n` messages have arrived (delivery is asynchronous).
    pub async fn collect(&self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n);
        within(&format!("{n} buffered messages"), async {
            while out.len() < n {
                out.extend(self.flush().await);
                if out.len() < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
        .await;
        assert_eq!(out.len(), n, "more messages than expected");
        out
    }
}
