//! `order-service`: settings, telemetry, build, run until SIGINT/SIGTERM, flush.

use std::process::ExitCode;

use order_service::{Application, Settings, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("order-service: {err}");
            return ExitCode::from(2);
        }
    };
    let telemetry = ordo_telemetry::init(&settings.telemetry);
    let served = async {
        Application::build(settings)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    let outcome = served.await;
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "order service failed");
            ExitCode::FAILURE
        }
    }
}
