//! What the order service's `grpc.health.v1` statuses follow:
//!
//! | service name | SERVING while |
//! |---|---|
//! | `""`, `ordo.order.v1.OrderService`, `ordo.deps.database` | the database answers a ping |
//! | `ordo.deps.nats` | the relay is connected to NATS and its publish breaker is not open |
//! | `ordo.liveness` | the process runs (the liveness probe) |
//!
//! NATS being down leaves the service SERVING: orders are taken and wait
//! in the outbox.

use std::time::Duration;

use ordo_outbox::NatsReachability;
use ordo_service_kit::health::{self, DEPS_DATABASE, DEPS_NATS, LIVENESS};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;

/// The order service's API in health answers.
pub const ORDER_SERVICE: &str = "ordo.order.v1.OrderService";
/// Every name this service reports.
pub const NAMES: [&str; 5] = ["", ORDER_SERVICE, DEPS_DATABASE, DEPS_NATS, LIVENESS];

/// Starts the probes and the tasks that report them; abort the tasks on shutdown.
pub fn start(
    reporter: &HealthReporter,
    database: DatabaseConnection,
    nats: Option<NatsReachability>,
    interval: Duration,
) -> Vec<JoinHandle<()>> {
    let database_up = health::probe("database", interval, move || {
        let database = database.clone();
        async move { database.ping().await.map_err(|err| err.to_string()) }
    });
    let mut tasks = vec![tokio::spawn(health::follow(
        reporter.clone(),
        vec!["", ORDER_SERVICE, DEPS_DATABASE],
        database_up,
    ))];
    if let Some(nats) = nats {
        let nats_up = health::probe("nats", interval, move || {
            let reachable = nats.check();
            async move { reachable }
        });
        tasks.push(tokio::spawn(health::follow(
            reporter.clone(),
            vec![DEPS_NATS],
            nats_up,
        )));
    }
    tasks
}
