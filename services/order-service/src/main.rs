//! `order-service`: settings, logging, build, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use order_service::{Application, Settings, logging, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("order-service: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(&settings);
    let served = async {
        Application::build(settings)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    match served.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "order service failed");
            ExitCode::FAILURE
        }
    }
}
