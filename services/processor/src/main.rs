//! `processor`: settings, telemetry, build, run until SIGINT/SIGTERM, flush.

use std::process::ExitCode;

use ordo_service_kit::serving::shutdown_signal;
use processor::{Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("processor: {err}");
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
            tracing::error!(error = format!("{err:#}"), "processor failed");
            ExitCode::FAILURE
        }
    }
}
