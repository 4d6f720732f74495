//! HTTP/1.1 spoken by hand over a fresh TCP connection, for tests that need
//! the request's bytes exactly as written (header case, order, repeats,
//! whitespace, a missing or doubled `Host`), which an HTTP client library
//! would normalise.

use crate::within;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Writes `request` on a new connection to `addr` and reads until the server
/// closes it (the request should say `Connection: close`); returns the
/// status and the body. Each step is bounded by [`crate::WAIT`].
pub async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let line = request.lines().next().unwrap_or_default();
    let response = within(&format!("the response to {line:?} and the close"), exchange)
        .await
        .expect("HTTP/1.1 exchange");
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
