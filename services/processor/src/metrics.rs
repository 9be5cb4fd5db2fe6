//! What the processor exposes at `/metrics`: gRPC requests, the relay's
//! outbox families, the consumer's outcomes, its durable consumers' lag and
//! the dead-letter stream's depth, payment calls by outcome and retries,
//! both breakers' states, and the process and build families.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use ordo_outbox::RelayMetrics;
use ordo_resilience::CircuitBreaker;
use ordo_service_kit::metrics::{ConsumerCounters, JetStreamGauges, expose_breakers};
use ordo_telemetry::grpc::GrpcMetrics;
use ordo_telemetry::metrics::{Exposition, MetricsSource};

use crate::store::INBOX_CONSUMER;

/// Payment calls by call and outcome.
#[derive(Debug, Default)]
pub struct PaymentMetrics {
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl PaymentMetrics {
    /// Counts one `call` (authorize, refund) ending in `outcome`.
    pub fn record(&self, call: &'static str, outcome: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((call, outcome))
            .or_default() += 1;
    }

    fn expose(&self, out: &mut Exposition, retries: u64) {
        let calls: Vec<((&str, &str), u64)> = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, count)| (*key, *count))
            .collect();
        let labels: Vec<[(&str, &str); 2]> = calls
            .iter()
            .map(|((call, outcome), _)| [("call", *call), ("outcome", *outcome)])
            .collect();
        out.counter(
            "ordo_payment_calls_total",
            "Payment calls (after retries), by call and outcome.",
            labels
                .iter()
                .zip(&calls)
                .map(|(labels, (_, count))| (&labels[..], *count as f64)),
        );
        let none: &[(&str, &str)] = &[];
        out.counter(
            "ordo_payment_retries_total",
            "Payment calls tried again after a transient failure.",
            [(none, retries as f64)],
        );
    }
}

/// Every metric the processor keeps.
#[derive(Debug)]
pub struct ProcessorMetrics {
    pub grpc: Arc<GrpcMetrics>,
    pub relay: Option<(Arc<RelayMetrics>, Arc<CircuitBreaker>)>,
    pub consumer: Arc<ConsumerCounters>,
    pub payments: Arc<PaymentMetrics>,
    pub payment_retries: Arc<AtomicU64>,
    pub payments_breaker: Arc<CircuitBreaker>,
    pub jetstream: Arc<JetStreamGauges>,
    /// Batched settlement's transactions and statements, when on.
    pub settlement: Option<Arc<ordo_service_kit::group_commit::BatchCounts>>,
}

impl MetricsSource for ProcessorMetrics {
    fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.grpc.expose(out);
            if let Some((relay, _)) = &self.relay {
                relay.expose(out);
            }
            self.consumer.expose(out, INBOX_CONSUMER);
            self.payments
                .expose(out, self.payment_retries.load(Relaxed));
            let mut breakers = vec![("payments", self.payments_breaker.as_ref())];
            if let Some((_, nats)) = &self.relay {
                breakers.push(("nats", nats.as_ref()));
            }
            expose_breakers(out, &breakers);
            self.jetstream.expose(out);
            ordo_outbox::statements::expose(out);
            if let Some(settlement) = &self.settlement {
                ordo_service_kit::group_commit::expose(out, &[("settle", Arc::clone(settlement))]);
            }
            ordo_telemetry::process::expose(
                out,
                env!("CARGO_PKG_VERSION"),
                option_env!("ORDO_GIT_COMMIT").unwrap_or("unknown"),
            );
        })
    }
}
