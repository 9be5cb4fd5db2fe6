//! Metric families more than one service exposes: a consumer's message
//! outcomes and a circuit breaker's state.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ordo_resilience::CircuitBreaker;
use ordo_telemetry::metrics::Exposition;

/// What became of the messages a consumer took.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Settled with an effect.
    pub applied: AtomicU64,
    /// Settled, recorded as ignored (the state forbade it).
    pub ignored: AtomicU64,
    /// The inbox had it: acked with no effect.
    pub duplicates: AtomicU64,
    /// A failed attempt, to be retried after a backoff.
    pub retried: AtomicU64,
    /// Not attempted yet (waiting on another message or an open breaker).
    pub deferred: AtomicU64,
    /// Moved to the dead-letter stream.
    pub dead_lettered: AtomicU64,
}

impl ConsumerCounters {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// `ordo_consumer_messages_total{consumer, outcome}`.
    pub fn expose(&self, out: &mut Exposition, consumer: &str) {
        let outcomes = [
            ("applied", &self.applied),
            ("ignored", &self.ignored),
            ("duplicate", &self.duplicates),
            ("retried", &self.retried),
            ("deferred", &self.deferred),
            ("dead_lettered", &self.dead_lettered),
        ];
        let labels: Vec<[(&str, &str); 2]> = outcomes
            .iter()
            .map(|(outcome, _)| [("consumer", consumer), ("outcome", *outcome)])
            .collect();
        out.counter(
            "ordo_consumer_messages_total",
            "Messages a consumer handled, by outcome.",
            labels
                .iter()
                .zip(outcomes)
                .map(|(labels, (_, counter))| (&labels[..], counter.load(Relaxed) as f64)),
        );
    }
}

/// `ordo_breaker_state{dependency}` (0 closed, 1 half-open, 2 open) and
/// `ordo_breaker_openings_total{dependency}`.
pub fn expose_breakers(out: &mut Exposition, breakers: &[(&str, &CircuitBreaker)]) {
    let labels: Vec<[(&str, &str); 1]> = breakers
        .iter()
        .map(|(dependency, _)| [("dependency", *dependency)])
        .collect();
    out.gauge(
        "ordo_breaker_state",
        "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
        labels
            .iter()
            .zip(breakers)
            .map(|(labels, (_, breaker))| (&labels[..], f64::from(breaker.state().gauge()))),
    );
    out.counter(
        "ordo_breaker_openings_total",
        "Times a circuit breaker opened, per dependency.",
        labels
            .iter()
            .zip(breakers)
            .map(|(labels, (_, breaker))| (&labels[..], breaker.openings() as f64)),
    );
}

/// The `/metrics` endpoint of a service, if it serves one.
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: Option<std::net::SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Serves `source` at `addr` (none when `None`).
    pub async fn start(
        addr: Option<std::net::SocketAddr>,
        source: std::sync::Arc<dyn ordo_telemetry::metrics::MetricsSource>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let Some(addr) = addr else {
            return Ok(Self {
                addr: None,
                stop,
                task: None,
            });
        };
        let (addr, task) = ordo_telemetry::metrics::serve(addr, source, stopped).await?;
        tracing::info!(%addr, "metrics at /metrics");
        Ok(Self {
            addr: Some(addr),
            stop,
            task: Some(task),
        })
    }

    /// Where `/metrics` is served.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.addr
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
