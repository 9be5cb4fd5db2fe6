//! What the processor's `grpc.health.v1` statuses follow:
//!
//! | service name | SERVING while |
//! |---|---|
//! | `""`, `ordo.processor.v1.ProcessorService`, `ordo.deps.database` | the database answers a ping |
//! | `ordo.deps.nats` | the consumer's connection is up (and the relay's publish breaker, if the relay runs here, is not open) |
//! | `ordo.deps.payments` | the payments circuit breaker is not open |
//! | `ordo.liveness` | the process runs (the liveness probe) |
//!
//! Payments or NATS being down leaves the processor SERVING: messages wait
//! in the stream, deferred, and nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use ordo_outbox::NatsReachability;
use ordo_resilience::{BreakerState, CircuitBreaker};
use ordo_service_kit::health::{self, DEPS_DATABASE, DEPS_NATS, DEPS_PAYMENTS, LIVENESS};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;

/// The processor's API in health answers.
pub const PROCESSOR_SERVICE: &str = "ordo.processor.v1.ProcessorService";
/// Every name the processor reports.
pub const NAMES: [&str; 6] = [
    "",
    PROCESSOR_SERVICE,
    DEPS_DATABASE,
    DEPS_NATS,
    DEPS_PAYMENTS,
    LIVENESS,
];

/// The dependencies to probe.
#[derive(Debug, Clone)]
pub struct Dependencies {
    pub database: DatabaseConnection,
    pub nats: async_nats::Client,
    /// What NATS last said against the consumer's connection.
    pub nats_refusal: ordo_service_kit::nats::NatsRefusal,
    pub relay: Option<NatsReachability>,
    pub payments: Arc<CircuitBreaker>,
}

/// Starts the probes and the tasks that report them; abort the tasks on shutdown.
pub fn start(
    reporter: &HealthReporter,
    deps: Dependencies,
    interval: Duration,
) -> Vec<JoinHandle<()>> {
    let database = deps.database;
    let database_up = health::probe("database", interval, move || {
        let database = database.clone();
        async move { database.ping().await.map_err(|err| err.to_string()) }
    });
    let (nats, refusal, relay) = (deps.nats, deps.nats_refusal, deps.relay);
    let nats_up = health::probe("nats", interval, move || {
        let consuming = if nats.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(match refusal.reason() {
                Some(reason) => format!("NATS refused the consumer: {reason}"),
                None => "the consumer is not connected to NATS".to_owned(),
            })
        };
        let outcome =
            consuming.and_then(|()| relay.as_ref().map_or(Ok(()), NatsReachability::check));
        async move { outcome }
    });
    let breaker = deps.payments;
    let payments_up = health::probe("payments", interval, move || {
        let closed = health::passed(
            breaker.state() != BreakerState::Open,
            "the payments circuit breaker is open",
        );
        async move { closed }
    });
    vec![
        tokio::spawn(health::follow(
            reporter.clone(),
            vec!["", PROCESSOR_SERVICE, DEPS_DATABASE],
            database_up,
        )),
        tokio::spawn(health::follow(reporter.clone(), vec![DEPS_NATS], nats_up)),
        tokio::spawn(health::follow(
            reporter.clone(),
            vec![DEPS_PAYMENTS],
            payments_up,
        )),
    ]
}
