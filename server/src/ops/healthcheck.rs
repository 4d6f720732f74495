//! `messenger-server healthcheck`: one `grpc.health.v1.Health/Check` for the
//! messenger service on this host's server, for container `HEALTHCHECK`s, so the
//! image needs no probe binary.
//!
//! Exit 0 when the service answers `SERVING`; 1 for anything else (refused,
//! timed out, `NOT_SERVING` during shutdown, unknown service). The whole probe
//! is bounded by [`TIMEOUT`]. The channel is built in one place,
//! [`endpoint`], so transport security is added there and nowhere else.
//!
//! When the server serves TLS (`MESSENGER_TLS_CERT` is set), or any of the
//! client TLS files below is given, the probe speaks TLS, as a client would: it verifies the certificate for the name
//! [`TLS_NAME`] against `MESSENGER_SERVER_CA` (the webpki roots without it)
//! and, for mTLS, presents `MESSENGER_CLIENT_CERT`/`MESSENGER_CLIENT_KEY`:
//! the same flags and variables as the messenger client's
//! ([`ClientTlsFiles`], the subcommand's arguments).

use messenger_proto::SERVICE_NAME;
use messenger_runtime::tls::{ClientTls, ClientTlsFiles, GrpcTarget};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Upper bound of the whole probe: connect, call, answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The name the probe checks the server certificate for (`make certs` puts it
/// in the server certificate's SANs).
pub const TLS_NAME: &str = "localhost";

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("invalid address {0}")]
    Address(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, #[source] tonic::transport::Error),
    #[error("health check failed: {0}")]
    Call(#[from] tonic::Status),
    #[error("service {SERVICE_NAME} is {0:?}")]
    NotServing(ServingStatus),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Tls(#[from] messenger_runtime::tls::TlsError),
}

/// Runs the probe against the server listening on `listen` (speaking TLS
/// when `server_tls`) and maps the outcome to the exit code, printing one
/// line.
pub async fn run(listen: SocketAddr, server_tls: bool, files: &ClientTlsFiles) -> ExitCode {
    let addr = probe_addr(listen);
    let tls = match probe_tls(server_tls, files) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("{SERVICE_NAME} at {addr}: unhealthy: {e}");
            return ExitCode::FAILURE;
        }
    };
    match check(addr, tls, TIMEOUT).await {
        Ok(()) => {
            println!("{SERVICE_NAME} at {addr}: SERVING");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // A TLS misconfiguration is said as what to fix, not as a handshake error.
            let why = messenger_runtime::tls::misconfiguration(&e)
                .map_or_else(|| e.to_string(), |m| m.message);
            eprintln!("{SERVICE_NAME} at {addr}: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The listen address, with a wildcard host replaced by loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    messenger_runtime::cli::local_probe_addr(listen.ip(), listen.port())
}

/// The probe's TLS config: `None` when the server speaks plaintext; else
/// `files`, checked for [`TLS_NAME`].
pub fn probe_tls(
    server_tls: bool,
    files: &ClientTlsFiles,
) -> Result<Option<ClientTls>, HealthcheckError> {
    // Any client TLS file also means TLS, as for the client and as
    // `--server-ca`'s help says: a CA given for a plaintext probe was a
    // plaintext probe of a TLS port, failing with an h2 frame error.
    if !server_tls && files.is_empty() {
        return Ok(None);
    }
    let tls = match files.load()? {
        Some(tls) => tls,
        None => ClientTls::webpki_roots()?,
    };
    Ok(Some(tls.domain_name(TLS_NAME)))
}

/// The one place the probe's channel is configured.
pub fn endpoint(
    addr: SocketAddr,
    tls: Option<ClientTls>,
    timeout: Duration,
) -> Result<GrpcTarget, HealthcheckError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{addr}");
    let uri = uri.parse().map_err(|_| HealthcheckError::Address(uri))?;
    Ok(messenger_runtime::tls::endpoint(uri, tls)?
        .map(|e| e.connect_timeout(timeout).timeout(timeout)))
}

/// `Ok` when the messenger service reports `SERVING` within `timeout`.
pub async fn check(
    addr: SocketAddr,
    tls: Option<ClientTls>,
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    let probe = async {
        let endpoint = endpoint(addr, tls, timeout)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| HealthcheckError::Connect(addr.to_string(), e))?;
        let request = HealthCheckRequest {
            service: SERVICE_NAME.to_owned(),
        };
        let response = HealthClient::new(channel).check(request).await?;
        match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(HealthcheckError::NotServing(other)),
        }
    };
    tokio::time::timeout(timeout, probe)
        .await
        .map_err(|_| HealthcheckError::Timeout(timeout))?
}
