//! `payments-sim`: settings, logging, build, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use ordo_service_kit::serving::shutdown_signal;
use payments_sim::{Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("payments-sim: {err}");
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
            tracing::error!(error = format!("{err:#}"), "payments simulator failed");
            ExitCode::FAILURE
        }
    }
}
