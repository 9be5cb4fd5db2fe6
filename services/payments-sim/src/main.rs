//! `payments-sim`: the command line, settings, telemetry, build, run until
//! SIGINT/SIGTERM, flush.

use std::process::ExitCode;

use ordo_service_kit::cli::{Binary, Start};
use ordo_service_kit::serving::shutdown_signal;
use payments_sim::{Application, Settings};

/// mimalloc: the services allocate a little for every request and message,
/// on several threads; glibc's allocator took a tenth of the pipeline's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BINARY: Binary = Binary {
    reference: &payments_sim::settings::reference::SETTINGS,
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("ORDO_GIT_COMMIT"),
};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match BINARY.start(std::env::args_os().skip(1), Settings::from_env) {
        Start::Serve(settings) => settings,
        Start::Exit(code) => return code,
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
            tracing::error!(error = format!("{err:#}"), "payments simulator failed");
            ExitCode::FAILURE
        }
    }
}
