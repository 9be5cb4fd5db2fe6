//! Building and running the processor: connect, migrate, start the relay
//! and the consumers, serve gRPC, and shut down within a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ordo_inbox::InboxRetention;
use ordo_migrations::Schema;
use ordo_outbox::RelayHandle;
use ordo_proto::processor::v1::processor_service_server::ProcessorServiceServer;
use ordo_service_kit::metrics::MetricsEndpoint;
use ordo_service_kit::serving::GrpcListener;
use sea_orm::DatabaseConnection;

use crate::consumer::{ConsumerFaults, OrderConsumer};
use crate::dead_letter::DeadLetters;
use crate::grpc::{AdminToken, ProcessorApi};
use crate::handler::Handler;
use crate::health;
use crate::metrics::ProcessorMetrics;
use crate::operator::Operator;
use crate::payments::PaymentGateway;
use crate::settings::Settings;
use crate::store::ProcessingStore;
use crate::view::ProcessorView;
use ordo_outbox::operator::OperatorApi;
use ordo_outbox::parked::OutboxAdmin;
use ordo_proto::operator::v1::operator_service_server::OperatorServiceServer;
use ordo_proto::outbox::v1::outbox_admin_service_server::OutboxAdminServiceServer;
use ordo_service_kit::shutdown::{Stopping, accept_until_drained, serve_within};

const SERVICE_NAME: &str = health::PROCESSOR_SERVICE;
/// What reflection lists: the processor's API, its outbox's admin and the
/// operator view.
const SERVED: [&str; 3] = [
    SERVICE_NAME,
    "ordo.outbox.v1.OutboxAdminService",
    "ordo.operator.v1.OperatorService",
];

/// A built processor: database migrated, relay started, listener bound.
#[derive(Debug)]
pub struct Application {
    listener: GrpcListener,
    store: ProcessingStore,
    dead_letters: DeadLetters,
    handler: Handler,
    jetstream: async_nats::jetstream::Context,
    nats_refusal: ordo_service_kit::nats::NatsRefusal,
    relay: Option<RelayHandle>,
    faults: Arc<ConsumerFaults>,
    metrics: Arc<ProcessorMetrics>,
    metrics_endpoint: MetricsEndpoint,
    settings: Settings,
}

impl Application {
    /// Connects to the database (migrating it unless disabled) and to NATS
    /// (in the background: the processor starts while NATS is down), starts
    /// the outbox relay unless disabled, and binds the gRPC listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.migrate {
            migrate(&settings.database_url).await?;
        }
        let db = connect(&settings.database_url, settings.database_max_connections).await?;
        ordo_outbox::outbox_partitions_record(&db, settings.relay.partitions).await?;
        let relay = if settings.outbox_relay {
            Some(RelayHandle::start(settings.relay_config()).await?)
        } else {
            None
        };
        let store = ProcessingStore::new(
            db,
            settings.relay.partitions,
            relay.as_ref().map(RelayHandle::nudger),
        )
        .with_settlement(settings.consuming.settle_batch);
        let (nats, nats_refusal) = ordo_service_kit::nats::connect_service(
            &settings.relay.nats_url,
            &settings.relay.nats_security,
            &settings.consuming.instance,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let jetstream = async_nats::jetstream::new(nats);
        let dead_letters = DeadLetters::new(jetstream.clone(), settings.relay.stream.clone());
        let handler = Handler {
            store: store.clone(),
            payments: PaymentGateway::new(&settings.payments)
                .context("cannot set up the payments client (PAYMENTS_URL, PAYMENTS_TLS_*)")?,
            breaker_deferrals: Arc::default(),
        };
        let metrics = Arc::new(ProcessorMetrics {
            grpc: Arc::default(),
            relay: relay
                .as_ref()
                .map(|relay| (relay.metrics(), relay.publish_breaker())),
            consumer: Arc::default(),
            payments: handler.payments.metrics(),
            payment_retries: handler.payments.retries(),
            payments_breaker: handler.payments.breaker(),
            jetstream: Arc::default(),
            settlement: store.settlement_counts(),
        });
        let metrics_endpoint =
            MetricsEndpoint::start(settings.metrics_listen_addr, Arc::clone(&metrics) as _).await?;
        let listener = GrpcListener::bind(
            settings.grpc_listen_addr,
            settings.grpc_tls.as_ref(),
            &metrics.grpc,
        )
        .await?;
        Ok(Self {
            listener,
            metrics,
            metrics_endpoint,
            store,
            dead_letters,
            handler,
            jetstream,
            nats_refusal,
            relay,
            faults: Arc::default(),
            settings,
        })
    }

    /// Where gRPC is served.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.addr()
    }

    /// The outbox relay running in this process, if any.
    pub fn relay(&self) -> Option<&RelayHandle> {
        self.relay.as_ref()
    }

    /// The circuit breaker in front of the payment provider.
    pub fn payments_breaker(&self) -> Arc<ordo_resilience::CircuitBreaker> {
        self.handler.payments.breaker()
    }

    /// Messages deferred so far because that breaker was open (a metric).
    pub fn breaker_deferrals(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.handler.breaker_deferrals)
    }

    /// Faults to switch on in tests.
    pub fn consumer_faults(&self) -> Arc<ConsumerFaults> {
        Arc::clone(&self.faults)
    }

    /// Serves and consumes until `shutdown` completes; then NOT_SERVING at
    /// once, serving on through `SHUTDOWN_DRAIN_DELAY`; then stops accepting
    /// and fetching, lets requests and messages in flight finish, and the
    /// relay its rounds (its leases released) — all by one deadline,
    /// `SHUTDOWN_TIMEOUT` after the drain delay ([`ordo_service_kit::shutdown`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        ordo_service_kit::health::alive(&reporter).await;
        let probes = health::start(
            &reporter,
            health::Dependencies {
                database: self.store.connection().clone(),
                nats: self.jetstream.client(),
                nats_refusal: self.nats_refusal.clone(),
                relay: self.relay.as_ref().map(RelayHandle::nats_reachability),
                payments: self.handler.payments.breaker(),
            },
            self.settings.health_probe_interval,
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_rx_history = stop_rx.clone();
        let consumer = self.settings.consumer.then(|| {
            tokio::spawn(
                OrderConsumer {
                    handler: self.handler.clone(),
                    jetstream: self.jetstream.clone(),
                    dead_letters: self.dead_letters.clone(),
                    stream: self.settings.relay.stream.clone(),
                    settings: self.settings.consuming.clone(),
                    faults: Arc::clone(&self.faults),
                    counters: Arc::clone(&self.metrics.consumer),
                }
                .run(stop_rx.clone()),
            )
        });
        // The dead-letter stream's depth is measured even without a consumer
        // here: an operator's redrive or purge changes it.
        let lag_poll = tokio::spawn(
            ordo_service_kit::metrics::JetStreamPoll {
                stream: self.settings.relay.stream.name.clone(),
                consumers: if self.settings.consumer {
                    crate::view::CONSUMERS.map(str::to_owned).to_vec()
                } else {
                    Vec::new()
                },
                dead_letter_stream: Some(self.settings.relay.stream.dead_letter_name()),
            }
            .run(
                self.jetstream.clone(),
                Arc::clone(&self.metrics.jetstream),
                stop_rx.clone(),
            ),
        );
        let retention = tokio::spawn(
            InboxRetention::new(
                self.store.connection().clone(),
                self.settings.inbox_retention.clone(),
            )
            .run(stop_rx),
        );
        let history_retention = tokio::spawn(
            ordo_inbox::Retention::of(
                self.store.connection().clone(),
                crate::store::ERROR_HISTORY_RETENTION,
                self.settings.error_history_retention.clone(),
            )
            .run(stop_rx_history.clone()),
        );
        let deferral_retention = tokio::spawn(
            ordo_inbox::Retention::of(
                self.store.connection().clone(),
                crate::store::DEFERRAL_RETENTION,
                self.settings.error_history_retention.clone(),
            )
            .run(stop_rx_history),
        );

        let stopping = Stopping::new(self.settings.shutdown);
        let stop_accepting = accept_until_drained(shutdown, stopping.clone(), {
            let reporter = reporter.clone();
            async move {
                for probe in probes {
                    probe.abort();
                    let _ = probe.await;
                }
                ordo_service_kit::health::close(reporter, &health::NAMES).await;
            }
        });
        // The consumers stop fetching when the server stops accepting, and
        // settle what they hold while requests drain.
        let stop_tx = Arc::new(stop_tx);
        let consumers_stopped_at_drain = {
            let (stopping, stop_tx) = (stopping.clone(), Arc::clone(&stop_tx));
            tokio::spawn(async move {
                stopping.drain_delay_over().await;
                let _ = stop_tx.send(true);
            })
        };
        let api = ProcessorApi::new(
            Operator {
                store: self.store.clone(),
                payments: self.handler.payments.clone(),
                dead_letters: self.dead_letters.clone(),
            },
            AdminToken::new(self.settings.admin_tokens()),
        );
        tracing::info!(addr = %self.listener.local_addr(), tls = self.listener.is_tls(), "processor listening");
        let (trace, shed, request_deadline) = self.settings.limits.layers(&self.metrics.grpc);
        let server = tonic::transport::Server::builder()
            .layer(trace)
            .layer(shed)
            .layer(request_deadline)
            .add_service(health_service)
            .add_service(ordo_service_kit::serving::reflection(&SERVED).build_v1()?)
            .add_service(ordo_service_kit::serving::reflection(&SERVED).build_v1alpha()?)
            .add_service(ProcessorServiceServer::new(api))
            .add_service(OutboxAdminServiceServer::new(OutboxAdmin::new(
                self.store.connection().clone(),
                AdminToken::new(self.settings.admin_tokens()),
            )))
            .add_service(OperatorServiceServer::new(OperatorApi::new(
                self.store.connection().clone(),
                AdminToken::new(self.settings.admin_tokens()),
                "processor",
                self.settings.relay.owner.clone(),
                ProcessorView {
                    store: self.store.clone(),
                    jetstream: self.jetstream.clone(),
                    stream: self.settings.relay.stream.clone(),
                    dead_letters: self.dead_letters.clone(),
                    payments_breaker: self.handler.payments.breaker(),
                },
            )))
            .serve_with_incoming_shutdown(self.listener.incoming(), stop_accepting);

        let served = serve_within(server, &stopping).await;
        consumers_stopped_at_drain.abort();
        let _ = stop_tx.send(true);
        if let Some(consumer) = consumer {
            // Messages in flight finish; what does not is redelivered.
            let _ = stopping.within("order consumer", consumer).await;
        }
        lag_poll.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), retention).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), history_retention).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), deferral_retention).await;
        if let Some(relay) = self.relay {
            relay.shutdown(stopping.remaining()).await?;
        }
        self.metrics_endpoint.stop().await;
        served.context("gRPC server failed")?;
        tracing::info!("processor stopped");
        Ok(())
    }
}

async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    ordo_migrations::database::connect(url, max_connections)
        .await
        .context("cannot connect to the database at DATABASE_URL")
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    ordo_migrations::database::migrate(url, Schema::Processor)
        .await
        .context("cannot migrate the database at DATABASE_URL")
}
