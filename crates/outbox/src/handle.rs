//! Running the relay inside any tokio program: [`RelayHandle::start`]
//! spawns a dedicated thread with its own Actix system on a two-worker
//! tokio runtime. The actors live on that thread; each round they start
//! runs as a tokio task on the workers. The embedding service's runtime
//! stays as it is, and a slow handler there can never stall an actor.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream;
use ordo_resilience::{BreakerState, CircuitBreaker, CircuitBreakerLayer, TimeoutLayer};
use sea_orm::DbErr;
use tokio::sync::{oneshot, watch};
use tower::ServiceBuilder;

use crate::actors::{NudgeBoard, Nudger, RelayTiming, Shutdown, Supervisor};
use crate::claim_group::ClaimGroup;
use crate::claims::{lease_pool, relay_pool};
use crate::config::RelayConfig;
use crate::config::StreamSettings;
use crate::faults::Faults;
use crate::lease::{LeaseView, Leases};
use crate::metrics::RelayMetrics;
use crate::publish::{JetStreamPublisher, PublishService};
use crate::relay::PartitionRelay;
use crate::stream::ensure_stream;
use ordo_service_kit::nats::NatsRefusal;

/// Why the relay could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox relay cannot reach the database: {0}")]
    Database(#[from] DbErr),
    #[error("outbox relay cannot reach NATS JetStream: {0}")]
    Nats(String),
    #[error("outbox relay thread failed: {0}")]
    Thread(String),
}

/// A running relay: the supervisor's address and what it shares.
#[derive(Debug)]
pub struct RelayHandle {
    supervisor: Addr<Supervisor>,
    nudger: Nudger,
    held: watch::Receiver<BTreeSet<i32>>,
    metrics: Arc<RelayMetrics>,
    faults: Arc<Faults>,
    breaker: Arc<CircuitBreaker>,
    client: async_nats::Client,
    refusal: NatsRefusal,
    stopped: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Wraps the JetStream publish service (timeouts, breakers, test faults).
pub type PublisherLayer = Box<dyn FnOnce(PublishService) -> PublishService + Send>;

impl RelayHandle {
    /// Connects, makes sure the stream exists, and starts the supervisor.
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        Self::start_with(config, Box::new(|publisher| publisher)).await
    }

    /// Like [`RelayHandle::start`], with the publish service wrapped by `layer`.
    pub async fn start_with(
        config: RelayConfig,
        layer: PublisherLayer,
    ) -> Result<Self, RelayError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("outbox-relay".to_owned())
            .spawn(move || run_system(config, layer, ready_tx, stopped_tx))
            .map_err(|err| RelayError::Thread(err.to_string()))?;
        let started = ready_rx
            .await
            .map_err(|_| RelayError::Thread("relay thread ended during start-up".to_owned()))??;
        Ok(Self {
            supervisor: started.supervisor,
            nudger: started.nudger,
            held: started.held,
            metrics: started.metrics,
            faults: started.faults,
            breaker: started.breaker,
            client: started.client,
            refusal: started.refusal,
            stopped: Some(stopped_rx),
            thread: Some(thread),
        })
    }

    /// The handle writers nudge after committing outbox rows.
    pub fn nudger(&self) -> Nudger {
        self.nudger.clone()
    }

    /// Partitions this replica holds right now.
    pub fn held_partitions(&self) -> BTreeSet<i32> {
        self.held.borrow().clone()
    }

    /// Follows the held partitions as they change.
    pub fn watch_held(&self) -> watch::Receiver<BTreeSet<i32>> {
        self.held.clone()
    }

    pub fn metrics(&self) -> Arc<RelayMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The breaker around publishing (its state: health, metrics).
    pub fn publish_breaker(&self) -> Arc<CircuitBreaker> {
        Arc::clone(&self.breaker)
    }

    /// NATS is reachable: connected, and the publish breaker not open.
    pub fn nats_reachability(&self) -> NatsReachability {
        NatsReachability {
            client: self.client.clone(),
            refusal: self.refusal.clone(),
            breaker: Arc::clone(&self.breaker),
        }
    }

    /// Fault injection, for crash tests.
    pub fn faults(&self) -> Arc<Faults> {
        Arc::clone(&self.faults)
    }

    /// Graceful stop: every actor finishes its round, leases are released
    /// so another replica takes over at once. Waits at most `deadline` for
    /// the rounds in flight.
    pub async fn shutdown(mut self, deadline: Duration) -> Result<(), RelayError> {
        let _ = self.supervisor.send(Shutdown { deadline }).await;
        self.join().await
    }

    /// Stops at once, as a crash would: rounds are abandoned and leases
    /// stay until they expire. For tests of takeover and crash safety.
    pub async fn abort(mut self) -> Result<(), RelayError> {
        self.supervisor.do_send(Abort);
        self.join().await
    }

    async fn join(&mut self) -> Result<(), RelayError> {
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|err| RelayError::Thread(err.to_string()))?
                .map_err(|_| RelayError::Thread("relay thread panicked".to_owned()))?;
        }
        Ok(())
    }
}

impl Drop for RelayHandle {
    /// A handle dropped without `shutdown` (an error path) stops its relay
    /// as a crash would, rather than leave a thread renewing leases.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.supervisor.do_send(Abort);
        }
    }
}

/// Stop the system now, without releasing anything.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Abort;

impl Handler<Abort> for Supervisor {
    type Result = ();

    /// The supervisor stops without a word to the database; the relay
    /// thread then drops its runtime, and with it every actor mid-round.
    fn handle(&mut self, _: Abort, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

struct Started {
    supervisor: Addr<Supervisor>,
    nudger: Nudger,
    held: watch::Receiver<BTreeSet<i32>>,
    metrics: Arc<RelayMetrics>,
    faults: Arc<Faults>,
    breaker: Arc<CircuitBreaker>,
    client: async_nats::Client,
    refusal: NatsRefusal,
}

fn run_system(
    config: RelayConfig,
    layer: PublisherLayer,
    ready: oneshot::Sender<Result<Started, RelayError>>,
    stopped: oneshot::Sender<()>,
) {
    let system = System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outbox-relay-io")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot build the relay runtime: {err}"))
    });
    system.block_on(async move {
        let (supervisor_stopped_tx, supervisor_stopped_rx) = oneshot::channel();
        match build(config, layer, supervisor_stopped_tx).await {
            Ok(started) => {
                let _ = ready.send(Ok(started));
                // Until a graceful stop ends the supervisor, or an abort the system.
                let _ = supervisor_stopped_rx.await;
            }
            Err(err) => {
                let _ = ready.send(Err(err));
            }
        }
    });
    let _ = stopped.send(());
}

async fn build(
    config: RelayConfig,
    layer: PublisherLayer,
    on_stopped: oneshot::Sender<()>,
) -> Result<Started, RelayError> {
    let db = relay_pool(&config.database_url, config.database_connections).await?;
    let lease_db = lease_pool(&config.database_url).await?;
    // NATS may be down at start-up: the relay starts anyway, rows wait in
    // the outbox (publishes fail and are retried, as in any outage), and
    // the stream is ensured as soon as the server answers.
    let (client, refusal) = ordo_service_kit::nats::connect_service(
        &config.nats_url,
        &config.nats_security,
        &format!("{} outbox relay", config.owner),
    )
    .await
    .map_err(RelayError::Nats)?;
    let jetstream = jetstream::context::ContextBuilder::new()
        .timeout(config.publish_timeout)
        .ack_timeout(config.publish_timeout)
        .build(client);
    tokio::spawn(ensure_stream_until_done(
        jetstream.clone(),
        config.stream.clone(),
    ));

    let partitions = config.partitions.get();
    let leases = Leases::new(
        lease_db,
        config.owner.clone(),
        partitions,
        config.lease_duration(),
    );
    leases.lease_rows_create().await?;

    let metrics = Arc::new(RelayMetrics::new(partitions));
    let faults = Arc::new(Faults::default());
    let board = Arc::new(NudgeBoard::new(partitions));
    let (held_tx, held_rx) = watch::channel(BTreeSet::new());
    let breaker = CircuitBreaker::new("nats", config.publish_breaker);
    let publisher = PublishService::new(
        ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
            .layer(TimeoutLayer::new(config.publish_timeout))
            .service(layer(PublishService::new(JetStreamPublisher::new(
                jetstream.clone(),
            )))),
    );
    let owner: Arc<str> = Arc::from(config.owner.as_str());
    let claims = ClaimGroup::start(
        db.clone(),
        Arc::clone(&owner),
        config.batch_size,
        config.claim_group_max,
        Arc::clone(&metrics),
    );
    let template = PartitionRelay {
        partition: -1,
        owner,
        db: db.clone(),
        claims,
        publisher,
        stream: Arc::new(config.stream.clone()),
        batch_size: config.batch_size,
        max_in_flight: config.max_in_flight,
        metrics: Arc::clone(&metrics),
        faults: Arc::clone(&faults),
        breaker: Arc::clone(&breaker),
        lease_view: Arc::new(LeaseView::new(partitions)),
    };
    let supervisor = Supervisor::new(
        leases,
        db,
        template,
        RelayTiming::from(&config),
        Arc::clone(&board),
        held_tx,
        on_stopped,
    )
    .start();
    Ok(Started {
        supervisor,
        nudger: Nudger::new(board),
        held: held_rx,
        metrics,
        faults,
        breaker,
        client: jetstream.client(),
        refusal,
    })
}

/// Creates or updates the stream, retrying with backoff (100 ms doubling to
/// 5 s) until NATS answers.
async fn ensure_stream_until_done(jetstream: jetstream::Context, stream: StreamSettings) {
    let mut delay = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match ensure_stream(&jetstream, &stream).await {
            Ok(_) => {
                tracing::info!(stream = stream.name, "stream ready");
                return;
            }
            Err(err) => {
                if !warned {
                    tracing::warn!(stream = stream.name, error = %err, "cannot set up the stream yet; rows wait in the outbox meanwhile");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What tells whether the relay can reach NATS: its connection and its
/// publish breaker. Cheap to clone and to ask (a health probe).
#[derive(Debug, Clone)]
pub struct NatsReachability {
    client: async_nats::Client,
    refusal: NatsRefusal,
    breaker: Arc<CircuitBreaker>,
}

impl NatsReachability {
    /// Connected, and the publish breaker not open; else why not (what
    /// the server said against us, if it refused us).
    pub fn check(&self) -> Result<(), String> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(match self.refusal.reason() {
                Some(reason) => format!("NATS refused the relay: {reason}"),
                None => "the relay is not connected to NATS".to_owned(),
            });
        }
        if self.breaker.state() == BreakerState::Open {
            return Err("the relay's publish breaker is open (publishes failing)".to_owned());
        }
        Ok(())
    }
}
