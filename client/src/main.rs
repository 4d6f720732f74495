use messenger_client::config::Command;
use messenger_client::{App, AppError, Config, healthcheck};
use messenger_runtime::cli::{StopClock, exit_code, parse_or_exit, shutdown_signal, usage_exit};
use messenger_runtime::telemetry;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // First: a stop request from here on is handled, never fatal.
    let clock = StopClock::default();
    let stop = clock.watch(shutdown_signal());
    let config: Config = parse_or_exit();
    if config.command == Some(Command::Healthcheck) {
        return healthcheck::run(&config);
    }
    // Shut down last: flushes spans after the app has stopped, within the
    // grace period.
    let telemetry = telemetry::init("messenger-client", config.log_format);
    let grace = config.shutdown_grace();
    let code = match run(config, stop).await {
        // A TLS file or token that cannot be used: one line, exit 2, as for
        // any other bad setting. Read once, in `App::start`.
        Err(e) if e.is_config() => usage_exit(e),
        result => exit_code(result),
    };
    telemetry.shutdown_by(clock.deadline(grace));
    code
}

async fn run(
    config: Config,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        stop_tx.send_replace(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // Ctrl-C while still waiting for the server ends the process too.
    let app = tokio::select! {
        app = App::start(config) => app?,
        () = stopped() => return Ok(()),
    };
    app.run_until_stopped(stopped()).await
}
