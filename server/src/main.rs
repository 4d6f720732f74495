use messenger_runtime::cli::{
    StopClock, exit_code, parse_or_exit, raise_nofile_limit, shutdown_signal, usage_exit,
};
use messenger_runtime::telemetry;
use messenger_server::app::config::Command;
use messenger_server::ops::healthcheck;
use messenger_server::{App, AppError, Config};
use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // First: a stop request from here on is handled, never fatal.
    let clock = StopClock::default();
    let stop = clock.watch(shutdown_signal());
    let config: Config = parse_or_exit();
    if let Some(Command::Healthcheck(probe)) = &config.command {
        let listen = SocketAddr::new(config.host, config.port);
        return healthcheck::run(listen, config.tls_cert.is_some(), &probe.tls).await;
    }
    // Shut down last: flushes spans after the server has stopped, within
    // the grace period (dropped early on a setup error).
    let telemetry = telemetry::init("messenger-server", config.log_format);
    let grace = config.shutdown_grace();
    match raise_nofile_limit() {
        Ok((before, after)) => tracing::info!(before, after, "open-files soft limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let app = match App::bind(config).await {
        Ok(app) => app,
        Err(AppError::Config(e)) => usage_exit(e),
        Err(e) => return exit_code(Err(e)),
    };
    let code = exit_code(app.run_until_stopped(stop).await);
    telemetry.shutdown_by(clock.deadline(grace));
    code
}
