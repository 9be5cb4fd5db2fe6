//! `processor`: settings, logging, build, run until SIGINT/SIGTERM.

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
    ordo_service_kit::logging::init(settings.log_format, &settings.log_filter);
    let served = async {
        Application::build(settings)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    match served.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "processor failed");
            ExitCode::FAILURE
        }
    }
}
