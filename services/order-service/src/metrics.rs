//! What the order service exposes at `/metrics`: gRPC requests by service,
//! method and code, the relay's outbox families and its NATS breaker, the
//! status consumer's outcomes and its durable consumers' lag, group
//! commit's transactions and the requests in them, and the
//! process and build families.

use std::sync::Arc;

use futures::future::BoxFuture;
use ordo_outbox::RelayMetrics;
use ordo_resilience::CircuitBreaker;
use ordo_service_kit::group_commit::BatchCounts;
use ordo_service_kit::metrics::{ConsumerCounters, JetStreamGauges, expose_breakers};
use ordo_telemetry::grpc::GrpcMetrics;
use ordo_telemetry::metrics::{Exposition, MetricsSource};

use crate::status::CONSUMER_NAME;

/// Every metric the order service keeps.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    pub grpc: Arc<GrpcMetrics>,
    pub relay: Option<(Arc<RelayMetrics>, Arc<CircuitBreaker>)>,
    pub status: Arc<ConsumerCounters>,
    pub jetstream: Arc<JetStreamGauges>,
    /// Group commit's transactions and requests, by request kind.
    pub group_commits: Vec<(&'static str, Arc<BatchCounts>)>,
}

impl MetricsSource for ServiceMetrics {
    fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.grpc.expose(out);
            if let Some((relay, breaker)) = &self.relay {
                relay.expose(out);
                expose_breakers(out, &[("nats", breaker)]);
            }
            self.status.expose(out, CONSUMER_NAME);
            self.jetstream.expose(out);
            ordo_service_kit::group_commit::expose(out, &self.group_commits);
            ordo_outbox::statements::expose(out);
            ordo_telemetry::process::expose(
                out,
                env!("CARGO_PKG_VERSION"),
                option_env!("ORDO_GIT_COMMIT").unwrap_or("unknown"),
            );
        })
    }
}
