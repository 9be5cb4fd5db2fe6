//! Metric families more than one service exposes: a consumer's message
//! outcomes, a circuit breaker's state, and what JetStream says about a
//! service's durable consumers and dead letters ([`JetStreamGauges`],
//! refreshed in the background by [`JetStreamPoll`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;

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

    /// Stops serving: a scrape in flight has a few seconds to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

/// How often [`JetStreamPoll`] asks the server: a consumer's lag changes by
/// whole batches, and Prometheus scrapes every 15 s or so.
pub const JETSTREAM_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The longest one question to the server may take before the figure is
/// dropped for that round.
const JETSTREAM_ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// A durable consumer's lag as the server counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Messages in the stream the consumer has not been given yet.
    pub pending: u64,
    /// Messages given out and not acknowledged yet.
    pub ack_pending: u64,
}

/// What JetStream said at the last poll. A figure the server did not give
/// (NATS down, the consumer not created yet) is absent rather than stale.
#[derive(Debug, Default)]
pub struct JetStreamGauges {
    consumers: Mutex<BTreeMap<String, ConsumerLag>>,
    dead_letters: Mutex<Option<u64>>,
}

impl JetStreamGauges {
    pub fn set_consumer(&self, durable: &str, lag: Option<ConsumerLag>) {
        let mut consumers = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match lag {
            Some(lag) => consumers.insert(durable.to_owned(), lag),
            None => consumers.remove(durable),
        };
    }

    pub fn set_dead_letters(&self, depth: Option<u64>) {
        *self
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = depth;
    }

    /// `ordo_consumer_pending_messages{consumer}`,
    /// `ordo_consumer_ack_pending_messages{consumer}` and `ordo_dead_letters`.
    pub fn expose(&self, out: &mut Exposition) {
        let consumers: Vec<(String, ConsumerLag)> = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(durable, lag)| (durable.clone(), *lag))
            .collect();
        let labels: Vec<[(&str, &str); 1]> = consumers
            .iter()
            .map(|(durable, _)| [("consumer", durable.as_str())])
            .collect();
        out.gauge(
            "ordo_consumer_pending_messages",
            "Messages a durable JetStream consumer has not been given yet (as last polled).",
            labels
                .iter()
                .zip(&consumers)
                .map(|(labels, (_, lag))| (&labels[..], lag.pending as f64)),
        );
        out.gauge(
            "ordo_consumer_ack_pending_messages",
            "Messages a durable JetStream consumer was given and has not acknowledged (as last polled).",
            labels
                .iter()
                .zip(&consumers)
                .map(|(labels, (_, lag))| (&labels[..], lag.ack_pending as f64)),
        );
        let dead_letters = *self
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(depth) = dead_letters {
            let none: &[(&str, &str)] = &[];
            out.gauge(
                "ordo_dead_letters",
                "Dead letters waiting in the dead-letter stream (as last polled).",
                [(none, depth as f64)],
            );
        }
    }
}

/// Asks JetStream, every [`JETSTREAM_POLL_INTERVAL`], for the lag of a
/// service's durable consumers on `stream` and the depth of its dead-letter
/// stream, into [`JetStreamGauges`]. Each round is independent: one that
/// fails leaves those figures absent, and the next round is the retry.
#[derive(Debug, Clone)]
pub struct JetStreamPoll {
    pub stream: String,
    pub consumers: Vec<String>,
    pub dead_letter_stream: Option<String>,
}

impl JetStreamPoll {
    /// One round.
    pub async fn activate(&self, jetstream: &jetstream::Context, gauges: &JetStreamGauges) {
        for durable in &self.consumers {
            let asked = async {
                let mut consumer: jetstream::consumer::PullConsumer = jetstream
                    .get_consumer_from_stream(durable, &self.stream)
                    .await
                    .map_err(|err| err.to_string())?;
                let info = consumer.info().await.map_err(|err| err.to_string())?;
                Ok::<_, String>(ConsumerLag {
                    pending: info.num_pending,
                    ack_pending: u64::try_from(info.num_ack_pending).unwrap_or_default(),
                })
            };
            let lag = match tokio::time::timeout(JETSTREAM_ASK_TIMEOUT, asked).await {
                Ok(Ok(lag)) => Some(lag),
                Ok(Err(err)) => {
                    tracing::debug!(consumer = %durable, error = %err, "consumer lag unknown");
                    None
                }
                Err(_) => None,
            };
            gauges.set_consumer(durable, lag);
        }
        if let Some(name) = &self.dead_letter_stream {
            let asked = async {
                let mut stream = jetstream
                    .get_stream(name)
                    .await
                    .map_err(|err| err.to_string())?;
                let info = stream.info().await.map_err(|err| err.to_string())?;
                Ok::<_, String>(info.state.messages)
            };
            let depth = match tokio::time::timeout(JETSTREAM_ASK_TIMEOUT, asked).await {
                Ok(Ok(depth)) => Some(depth),
                Ok(Err(err)) => {
                    tracing::debug!(stream = %name, error = %err, "dead-letter depth unknown");
                    None
                }
                Err(_) => None,
            };
            gauges.set_dead_letters(depth);
        }
    }

    /// Runs a round every [`JETSTREAM_POLL_INTERVAL`] until `stop` turns true.
    pub async fn run(
        self,
        jetstream: jetstream::Context,
        gauges: std::sync::Arc<JetStreamGauges>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(JETSTREAM_POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.activate(&jetstream, &gauges).await,
                () = async { drop(stop.wait_for(|stop| *stop).await) } => return,
            }
        }
    }
}
