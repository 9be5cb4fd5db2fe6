//! Building and running the order service: connect, migrate, bind, serve,
//! and shut down within a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use ordo_outbox::parked::OutboxAdmin;
use ordo_proto::outbox::v1::outbox_admin_service_server::OutboxAdminServiceServer;
use ordo_service_kit::admin::AdminToken;
use ordo_service_kit::shutdown::{Stopping, accept_until_drained, serve_within};

/// The admin services every service with an outbox serves.
const OUTBOX_ADMIN: &str = "ordo.outbox.v1.OutboxAdminService";
const OPERATOR: &str = "ordo.operator.v1.OperatorService";
use ordo_migrations::Schema;
use ordo_outbox::RelayHandle;
use ordo_outbox::operator::OperatorApi;
use ordo_proto::operator::v1::operator_service_server::OperatorServiceServer;
use ordo_proto::order::v1::order_service_server::OrderServiceServer;
use ordo_service_kit::metrics::MetricsEndpoint;
use ordo_service_kit::serving::GrpcListener;
use sea_orm::DatabaseConnection;

use crate::grpc::OrderApi;
use crate::health;
use crate::metrics::ServiceMetrics;
use crate::settings::Settings;
use crate::status::KINDS;
use crate::store::OrderStore;

/// A built order service: its database is reachable and migrated, and its
/// listener is bound (so `local_addr` is known before serving, also on port 0).
#[derive(Debug)]
pub struct Application {
    listener: GrpcListener,
    store: OrderStore,
    health_probe: DatabaseConnection,
    relay: Option<RelayHandle>,
    metrics: Arc<ServiceMetrics>,
    metrics_endpoint: MetricsEndpoint,
    settings: Settings,
}

impl Application {
    /// Connects to the database, applies migrations unless disabled, starts
    /// the outbox relay unless disabled (which needs NATS), and binds the
    /// gRPC listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.migrate {
            migrate(&settings.database_url).await?;
        }
        let db = connect(&settings.database_url, settings.database_max_connections).await?;
        ordo_outbox::outbox_partitions_record(&db, settings.relay.partitions).await?;
        let health_probe = connect(&settings.database_url, 1).await?;
        let relay = if settings.outbox_relay {
            Some(RelayHandle::start(settings.relay_config()).await?)
        } else {
            None
        };
        let store = OrderStore::new(
            db,
            settings.relay.partitions,
            relay.as_ref().map(RelayHandle::nudger),
        )
        .with_group_commit(settings.group_commit)
        .with_status_settlement(settings.status_settle_batch);
        let metrics = Arc::new(ServiceMetrics {
            relay: relay
                .as_ref()
                .map(|relay| (relay.metrics(), relay.publish_breaker())),
            group_commits: store.group_commit_counters(),
            ..ServiceMetrics::default()
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
            health_probe,
            relay,
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

    /// Serves until `shutdown` completes; then NOT_SERVING at once, serving
    /// on through `SHUTDOWN_DRAIN_DELAY`; then stops accepting and taking
    /// status messages, lets requests and messages in flight finish, and the
    /// relay its rounds (its leases released) — all by one deadline,
    /// `SHUTDOWN_TIMEOUT` after the drain delay ([`ordo_service_kit::shutdown`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let status_store = self.store.clone();
        let (reporter, health_service) = tonic_health::server::health_reporter();
        ordo_service_kit::health::alive(&reporter).await;
        let probes = health::start(
            &reporter,
            self.health_probe,
            self.relay.as_ref().map(RelayHandle::nats_reachability),
            self.settings.health_probe_interval,
        );

        let served = ["ordo.order.v1.OrderService", OUTBOX_ADMIN, OPERATOR];
        let reflection_v1 = ordo_service_kit::serving::reflection(&served).build_v1()?;
        let reflection_v1alpha = ordo_service_kit::serving::reflection(&served).build_v1alpha()?;

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

        tracing::info!(addr = %self.listener.local_addr(), tls = self.listener.is_tls(), "order service listening");
        let (trace, shed, request_deadline) = self.settings.limits.layers(&self.metrics.grpc);
        let server = tonic::transport::Server::builder()
            .layer(trace)
            .layer(shed)
            .layer(request_deadline)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(OrderServiceServer::new(OrderApi::new(self.store.clone())))
            .add_service(OutboxAdminServiceServer::new(OutboxAdmin::new(
                self.store.connection().clone(),
                AdminToken::new(self.settings.admin_tokens()),
            )))
            .add_service(OperatorServiceServer::new(OperatorApi::new(
                self.store.connection().clone(),
                AdminToken::new(self.settings.admin_tokens()),
                "order-service",
                self.settings.relay.owner.clone(),
                crate::view::OrderView::new(
                    self.store.clone(),
                    self.settings.relay.nats_url.clone(),
                    self.settings.relay.nats_security.clone(),
                    self.settings.relay.stream.clone(),
                ),
            )))
            .serve_with_incoming_shutdown(self.listener.incoming(), stop_accepting);

        let relay = self.relay;
        let (stop_consumer, consumer_stop) = tokio::sync::watch::channel(false);
        let stop_consumer = Arc::new(stop_consumer);
        // The consumers stop taking messages when the server stops accepting.
        let consumers_stopped_at_drain = {
            let (stopping, stop_consumer) = (stopping.clone(), Arc::clone(&stop_consumer));
            tokio::spawn(async move {
                stopping.drain_delay_over().await;
                let _ = stop_consumer.send(true);
            })
        };
        let retention = self.settings.status_consumer.then(|| {
            tokio::spawn(
                ordo_inbox::InboxRetention::new(
                    self.store.connection().clone(),
                    self.settings.inbox_retention.clone(),
                )
                .run(consumer_stop.clone()),
            )
        });
        let key_retention = tokio::spawn(
            ordo_inbox::Retention::of(
                self.store.connection().clone(),
                crate::store::IDEMPOTENCY_KEY_RETENTION,
                self.settings.idempotency_key_retention.clone(),
            )
            .run(consumer_stop.clone()),
        );
        let lag_poll = self.settings.status_consumer.then(|| {
            let poll = ordo_service_kit::metrics::JetStreamPoll {
                stream: self.settings.relay.stream.name.clone(),
                consumers: KINDS
                    .iter()
                    .map(|kind| format!("order-service-{kind}"))
                    .collect(),
                dead_letter_stream: None,
            };
            let (url, security) = (
                self.settings.relay.nats_url.clone(),
                self.settings.relay.nats_security.clone(),
            );
            let gauges = Arc::clone(&self.metrics.jetstream);
            let stop = consumer_stop.clone();
            tokio::spawn(async move {
                match ordo_service_kit::nats::connect_service(
                    &url,
                    &security,
                    "order-service metrics",
                )
                .await
                {
                    Ok((client, _)) => {
                        poll.run(async_nats::jetstream::new(client), gauges, stop)
                            .await;
                    }
                    Err(err) => tracing::warn!(error = %err, "consumer lag not measured"),
                }
            })
        });
        let consumer = self.settings.status_consumer.then(|| {
            tokio::spawn(
                crate::status::StatusConsumer {
                    store: status_store,
                    nats_url: self.settings.relay.nats_url.clone(),
                    nats_security: self.settings.relay.nats_security.clone(),
                    stream: self.settings.relay.stream.clone(),
                    counters: Arc::clone(&self.metrics.status),
                    concurrency: self.settings.status_concurrency,
                }
                .run(consumer_stop),
            )
        });
        let served = serve_within(server, &stopping).await;
        consumers_stopped_at_drain.abort();
        let _ = stop_consumer.send(true);
        if let Some(consumer) = consumer {
            // A message in flight finishes; its ack or redelivery decides the rest.
            let _ = stopping.within("status consumer", consumer).await;
        }
        if let Some(retention) = retention {
            let _ = stopping.within("inbox retention", retention).await;
        }
        if let Some(lag_poll) = lag_poll {
            lag_poll.abort();
        }
        let _ = stopping.within("key retention", key_retention).await;
        if let Some(relay) = relay {
            relay.shutdown(stopping.remaining()).await?;
        }
        self.metrics_endpoint.stop().await;
        served.context("gRPC server failed")?;
        tracing::info!("order service stopped");
        Ok(())
    }
}

async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    ordo_migrations::database::connect(url, max_connections)
        .await
        .context("cannot connect to the database at DATABASE_URL")
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    ordo_migrations::database::migrate(url, Schema::Orders)
        .await
        .context("cannot migrate the database at DATABASE_URL")
}
