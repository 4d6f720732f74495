//! gRPC spoken by hand over a raw HTTP/2 connection (the `h2` crate), for
//! hostile-input tests below the generated client: any framing, any body,
//! any content type, and calls held open mid-body.

use crate::within;
use bytes::Bytes;
use std::net::SocketAddr;
use tokio::net::TcpStream;

pub const SEND_PATH: &str = "/mes_grpc.MessengerServer/SendMessage";

/// A gRPC length-prefixed message: compressed flag, big-endian length, bytes.
pub fn frame(compressed: bool, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The request `author: "a", text: text` encoded by hand (fields 1 and 2).
pub fn encoded_request(text: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a, 1, b'a', 0x12];
    let mut len = text.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(text);
    out
}

/// An HTTP/2 connection speaking gRPC by hand.
pub struct Raw {
    addr: SocketAddr,
    h2: h2::client::SendRequest<Bytes>,
}

impl Raw {
    /// Speaks over an HTTP/2 connection the caller drives (and can watch end).
    pub fn over(addr: SocketAddr, h2: h2::client::SendRequest<Bytes>) -> Self {
        Self { addr, h2 }
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = within("raw connect", TcpStream::connect(addr))
            .await
            .expect("tcp connect");
        let (h2, conn) = within("h2 handshake", h2::client::handshake(tcp))
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        Self { addr, h2 }
    }

    /// Opens a call on `path` with `content_type`; the body stays open.
    pub async fn open(
        &mut self,
        path: &str,
        content_type: &str,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        self.open_with(path, content_type, &[]).await
    }

    /// [`Raw::open`] with extra request headers (`grpc-timeout`, `grpc-encoding`, ...).
    pub async fn open_with(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let headers = [&[("content-type", content_type)], headers].concat();
        self.send_head("POST", path, &headers, false).await
    }

    /// Sends a request's headers (`te: trailers` and `headers`, in order);
    /// `end` ends the stream with them.
    async fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        end: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("request");
        let mut ready = within("h2 ready", self.h2.clone().ready())
            .await
            .expect("h2 ready");
        ready.send_request(request, end).expect("send headers")
    }

    /// A request with no body, any `method` and exactly `headers` (a name
    /// listed twice is sent twice; no content-type unless listed):
    /// `(HTTP status, grpc-status, grpc-message decoded)` of a headers-only
    /// answer (`-1` and empty when the answer carries no gRPC status).
    pub async fn head_only(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, i32, String) {
        let (response, _) = self.send_head(method, path, headers, true).await;
        let response = within("headers-only answer", response)
            .await
            .expect("HTTP/2 response");
        let headers = response.headers();
        let code = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(-1);
        let message = tonic::Status::from_header_map(headers)
            .map(|status| status.message().to_owned())
            .unwrap_or_default();
        (response.status().as_u16(), code, message)
    }

    /// One whole call: headers, `body`, end of stream; returns the status.
    pub async fn call(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> (i32, String) {
        self.call_with(path, content_type, &[], body).await
    }

    /// [`Raw::call`] with extra request headers.
    pub async fn call_with(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (i32, String) {
        let (response, mut send) = self.open_with(path, content_type, headers).await;
        // A refusal that needs no body (unknown method, unsupported encoding)
        // may be answered trailers-only, closing the stream, before the body
        // is sent (h2: `InactiveStreamId`). That is not the call failing: the
        // status below says what happened, and a dead connection fails there.
        if let Err(e) = send.send_data(Bytes::from(body), true) {
            println!("{path}: body not sent ({e}); the server had already answered");
        }
        grpc_status(response).await
    }
}

/// Waits for the response and returns `(grpc-status, grpc-message decoded)` from its
/// headers (trailers-only) or its trailers.
pub async fn grpc_status(response: h2::client::ResponseFuture) -> (i32, String) {
    within("raw gRPC status", async {
        let response = response.await.expect("HTTP/2 response");
        assert_eq!(response.status(), 200, "gRPC answers HTTP 200");
        let (head, mut body) = response.into_parts();
        let headers = if head.headers.contains_key("grpc-status") {
            head.headers
        } else {
            while let Some(chunk) = body.data().await {
                let n = chunk.expect("body chunk").len();
                let _ = body.flow_control().release_capacity(n);
            }
            body.trailers()
                .await
                .expect("trailers")
                .expect("gRPC trailers present")
        };
        let code = headers["grpc-status"].to_str().unwrap().parse().unwrap();
        // grpc-message percent-decoded (PROTOCOL-HTTP2.md), as a client reads it.
        let message = tonic::Status::from_header_map(&headers)
            .map(|status| status.message().to_owned())
            .unwrap_or_default();
        (code, message)
    })
    .await
}
