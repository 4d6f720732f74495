//! The [`Backend`] handle: one channel to the server that the send path and
//! the subscription loop share.
//!
//! Invariants: the channel connects lazily and reconnects on demand, so a
//! server that is down at start only delays the first subscription; with
//! TLS, an `http` address is upgraded to `https`; the bearer token is marked
//! sensitive and added to every outgoing call by [`Backend::authorize`];
//! given [`Windows`], what the server may send ahead of this side's reading
//! is bounded by them (otherwise hyper's 2 MiB per stream, 5 MiB in all).

use messenger_proto::pb::messenger_server_client::MessengerServerClient;
use messenger_runtime::tls::ClientTls;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Uri};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_STREAM_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The `grpc-timeout` value tonic sends for `timeout`.
fn grpc_timeout(timeout: Duration) -> Option<AsciiMetadataValue> {
    let mut probe = tonic::Request::new(());
    probe.set_timeout(timeout);
    probe.metadata().get(GRPC_TIMEOUT).cloned()
}

/// HTTP/2 keepalive of the channel: a PING every `interval`, also while no
/// call is open, so a dead peer under an idle subscription is noticed within
/// `interval + timeout` and the subscriber reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

/// HTTP/2 flow-control windows of a channel: the bytes the server may send
/// on a stream, and on the whole connection, that this side has not read.
/// Unread bytes wait in the connection's buffers up to these.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub stream: u32,
    pub connection: u32,
}

/// A cloneable handle to the server.
#[derive(Clone)]
pub struct Backend {
    pub(super) client: MessengerServerClient<Channel>,
    addr: String,
    pub(super) send_timeout: Duration,
    /// `grpc-timeout` for `send_timeout`, formatted once rather than per call.
    grpc_timeout: Option<AsciiMetadataValue>,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<AsciiMetadataValue>,
}

impl Backend {
    /// Creates the channel without connecting; calls connect (and reconnect)
    /// on demand. With `tls`, an `http` address is upgraded to `https`.
    pub fn new(
        uri: Uri,
        send_timeout: Duration,
        keepalive: Keepalive,
        tls: Option<ClientTls>,
        authorization: Option<AsciiMetadataValue>,
        windows: Option<Windows>,
    ) -> Result<Self, messenger_runtime::tls::TlsError> {
        let addr = uri
            .authority()
            .map_or_else(|| uri.to_string(), ToString::to_string);
        let uri = match tls {
            Some(_) => messenger_runtime::tls::with_https(&uri),
            None => uri,
        };
        let channel = messenger_runtime::tls::endpoint(uri, tls)?
            .map(|e| {
                e.connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(keepalive.interval)
                    .keep_alive_timeout(keepalive.timeout)
                    .keep_alive_while_idle(true)
                    .initial_stream_window_size(windows.map(|w| w.stream))
                    .initial_connection_window_size(windows.map(|w| w.connection))
            })
            .connect_lazy();
        // The server may be configured for texts up to 16 MiB; never refuse its stream.
        let client =
            MessengerServerClient::new(channel).max_decoding_message_size(MAX_STREAM_MESSAGE_BYTES);
        Ok(Self {
            client,
            addr,
            send_timeout,
            grpc_timeout: grpc_timeout(send_timeout),
            authorization,
        })
    }

    /// Adds the bearer token, if any, to an outgoing call.
    pub(super) fn authorize(&self, metadata: &mut MetadataMap) {
        if let Some(value) = &self.authorization {
            metadata.insert(messenger_proto::AUTHORIZATION_METADATA, value.clone());
        }
    }

    /// Sets the `grpc-timeout` of the send deadline, the value tonic's
    /// [`tonic::Request::set_timeout`] gives (it formats it anew per call).
    pub(super) fn set_send_timeout(&self, metadata: &mut MetadataMap) {
        if let Some(value) = &self.grpc_timeout {
            metadata.insert(GRPC_TIMEOUT, value.clone());
        }
    }

    /// The server's `host:port`, for logs and error messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_deadline_goes_out_as_grpc_timeout() {
        // The most precise unit within 8 digits (the gRPC spec's limit).
        let value = |d| grpc_timeout(d).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(value(Duration::from_secs(5)).as_deref(), Some("5000000u"));
        assert_eq!(
            value(Duration::from_millis(50)).as_deref(),
            Some("50000000n")
        );
        assert_eq!(
            value(Duration::from_secs(1000)).as_deref(),
            Some("1000000m")
        );
    }
}
