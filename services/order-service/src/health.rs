//! `grpc.health.v1` status that follows the database: a probe every
//! interval sets SERVING or NOT_SERVING for the whole server (`""`) and for
//! `ordo.order.v1.OrderService`, logging only the transitions.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Service names whose health follows the database.
pub const SERVICE_NAMES: [&str; 2] = ["", "ordo.order.v1.OrderService"];

/// Reports `status` for every name in [`SERVICE_NAMES`].
pub async fn report(reporter: &HealthReporter, status: ServingStatus) {
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Ends every `Watch` stream, so open health watches do not hold shutdown.
pub async fn close(mut reporter: HealthReporter) {
    for name in SERVICE_NAMES {
        reporter.clear_service_status(name).await;
    }
}

/// Probes the database forever over `probe`, a connection of its own (a busy
/// request pool must not read as a database outage); the caller aborts the
/// task on shutdown.
pub async fn watch_database(
    probe: DatabaseConnection,
    reporter: HealthReporter,
    interval: Duration,
) {
    let probe_timeout = interval.max(Duration::from_secs(1));
    let mut last = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = tokio::time::timeout(probe_timeout, probe.ping()).await;
        let status = match &outcome {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(_)) | Err(_) => ServingStatus::NotServing,
        };
        if last != Some(status) {
            match outcome {
                Ok(Ok(())) => tracing::info!("database reachable, serving"),
                Ok(Err(err)) => tracing::warn!(error = %err, "database unreachable, not serving"),
                Err(_) => tracing::warn!(?probe_timeout, "database probe timed out, not serving"),
            }
            report(&reporter, status).await;
            last = Some(status);
        }
    }
}
