//! Spawning the processor and the payment simulator for a test, publishing
//! order events the way the order service does, and reading what came out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use ordo_outbox::StreamSettings;
use ordo_proto::events::v1 as events;
use ordo_proto::payments::v1::{
    Faults, GetPaymentCountsRequest, GetPaymentCountsResponse, SetFaultsRequest,
};
use ordo_proto::processor::v1::{
    DeadLetter, GetOrderProcessingRequest, ListDeadLettersRequest, OrderProcessing,
    ProcessingState, PurgeDeadLetterRequest, PurgeDeadLetterResponse, RedriveDeadLetterRequest,
    RedriveDeadLetterResponse,
};
use ordo_proto::{PaymentServiceClient, ProcessorServiceClient};
use ordo_resilience::Backoff;
use ordo_testkit::{
    Schema, StreamMessage, TcpProxy, TestDatabase, TestStream, nats::shared_nats_url,
};
use processor::consumer::ConsumerFaults;
use processor::{Application, Settings};
use prost::Message as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running payment simulator.
pub struct Payments {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: PaymentServiceClient<Channel>,
    _stop: oneshot::Sender<()>,
}

impl Payments {
    pub async fn spawn() -> Self {
        let app = payments_sim::Application::build(payments_sim::Settings {
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = PaymentServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        Self {
            addr,
            metrics_addr,
            client,
            _stop: stop,
        }
    }

    /// Sets the simulator's faults (decline limit kept at its default).
    pub async fn set_faults(&self, error_rate: f64, outage: bool) {
        self.set(Faults {
            latency_ms: 0,
            error_rate,
            outage,
            decline_above_minor: 1_000_000,
        })
        .await;
    }

    /// Makes every Authorize, Refund and Void take `latency` before it acts.
    pub async fn set_latency(&self, latency: Duration) {
        self.set(Faults {
            latency_ms: u32::try_from(latency.as_millis()).unwrap(),
            error_rate: 0.0,
            outage: false,
            decline_above_minor: 1_000_000,
        })
        .await;
    }

    async fn set(&self, faults: Faults) {
        self.client
            .clone()
            .set_faults(SetFaultsRequest {
                faults: Some(faults),
            })
            .await
            .unwrap();
    }

    /// Authorize, Refund and Void calls the simulator received, failed ones included.
    pub async fn calls_received(&self) -> u64 {
        self.client
            .clone()
            .get_faults(ordo_proto::payments::v1::GetFaultsRequest {})
            .await
            .unwrap()
            .into_inner()
            .calls_received
    }

    pub async fn counts(&self, order_id: Uuid) -> GetPaymentCountsResponse {
        self.client
            .clone()
            .get_payment_counts(GetPaymentCountsRequest {
                order_id: order_id.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

/// The processor running for one test, with its simulator and stream.
pub struct TestProcessor {
    pub client: ProcessorServiceClient<Channel>,
    pub payments: Payments,
    /// Between the processor and the simulator: cut it, or lose answers.
    pub payments_proxy: TcpProxy,
    pub db: DatabaseConnection,
    pub stream: TestStream,
    pub stream_settings: StreamSettings,
    pub nats_url: String,
    pub jetstream: jetstream::Context,
    pub faults: Arc<ConsumerFaults>,
    pub payments_breaker: Arc<ordo_resilience::CircuitBreaker>,
    pub breaker_deferrals: Arc<std::sync::atomic::AtomicU64>,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
    _database: TestDatabase,
}

/// Quick retries, so a test sees five attempts in well under a second.
pub fn fast_settings(settings: Settings) -> Settings {
    let mut settings = settings;
    settings.consuming.backoff =
        Backoff::full_jitter(Duration::from_millis(10), Duration::from_millis(80));
    settings.consuming.ack_wait = Duration::from_secs(2);
    settings.payments.timeout = Duration::from_millis(500);
    settings.payments.retry_backoff =
        Backoff::full_jitter(Duration::from_millis(2), Duration::from_millis(10));
    settings.relay.min_poll_interval = Duration::from_millis(5);
    settings.relay.poll_interval = Duration::from_millis(100);
    settings
}

impl TestProcessor {
    pub async fn spawn() -> Self {
        Self::spawn_with(|settings| settings).await
    }

    /// Spawns over a fresh stream, with adjusted settings.
    pub async fn spawn_with(configure: impl FnOnce(Settings) -> Settings) -> Self {
        let stream = TestStream::new().await;
        let mut stream_settings = StreamSettings::isolated(&stream.name, &stream.subject_prefix);
        stream_settings.duplicate_window = Duration::from_secs(1);
        Self::spawn_on(stream, stream_settings, configure).await
    }

    pub async fn spawn_on(
        stream: TestStream,
        stream_settings: StreamSettings,
        configure: impl FnOnce(Settings) -> Settings,
    ) -> Self {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let payments = Payments::spawn().await;
        let payments_proxy = TcpProxy::start_http2(payments.addr).await.unwrap();
        let nats_url = shared_nats_url();
        let client = async_nats::connect(&nats_url).await.unwrap();
        let jetstream = jetstream::new(client);
        ordo_outbox::stream::ensure_stream(&jetstream, &stream_settings)
            .await
            .unwrap();

        let mut settings = fast_settings(Settings::default());
        settings.database_url = database.url().to_owned();
        settings.database_max_connections = 8;
        settings.grpc_listen_addr = "127.0.0.1:0".parse().unwrap();
        settings.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        settings.relay.nats_url = nats_url.clone();
        settings.relay.stream = stream_settings.clone();
        settings.payments.url = format!("http://{}", payments_proxy.addr());
        settings.admin_token = Some(ADMIN_TOKEN.into());
        let settings = configure(settings);

        let app = Application::build(settings)
            .await
            .expect("processor builds");
        let addr = app.local_addr();
        let faults = app.consumer_faults();
        let payments_breaker = app.payments_breaker();
        let breaker_deferrals = app.breaker_deferrals();
        let metrics_addr = app.metrics_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = ProcessorServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let db = database.connect().await.unwrap();
        Self {
            client,
            payments,
            payments_proxy,
            db,
            stream,
            stream_settings,
            nats_url,
            jetstream,
            faults,
            payments_breaker,
            breaker_deferrals,
            addr,
            metrics_addr,
            shutdown: Some(shutdown),
            server,
            _database: database,
        }
    }

    /// Publishes an `OrderPlaced` as the order service's relay would; its message id.
    pub async fn publish_placed(&self, order_id: Uuid, total_minor: i64) -> String {
        let payload = events::OrderPlaced {
            event_id: Uuid::now_v7().to_string(),
            order_id: order_id.to_string(),
            customer_id: "c-1".into(),
            currency: "EUR".into(),
            total_minor,
            correlation_id: format!("corr-{order_id}"),
            ..Default::default()
        };
        let message_id = payload.event_id.clone();
        self.publish("orders.placed", &message_id, payload.encode_to_vec())
            .await;
        message_id
    }

    /// Publishes an `OrderCancelled`; its message id.
    pub async fn publish_cancelled(&self, order_id: Uuid) -> String {
        let payload = events::OrderCancelled {
            event_id: Uuid::now_v7().to_string(),
            order_id: order_id.to_string(),
            reason: "changed my mind".into(),
            correlation_id: format!("corr-{order_id}"),
            ..Default::default()
        };
        let message_id = payload.event_id.clone();
        self.publish("orders.cancelled", &message_id, payload.encode_to_vec())
            .await;
        message_id
    }

    /// Publishes raw bytes on `<prefix><subject>` with `message_id`; the
    /// JetStream ack says whether it was a duplicate.
    pub async fn publish(&self, subject: &str, message_id: &str, payload: Vec<u8>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
        headers.insert("x-correlation-id", "corr-test");
        let ack = self
            .jetstream
            .publish_with_headers(
                self.stream_settings.subject_for(subject),
                headers,
                payload.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        ack.duplicate
    }

    /// The processor's record of an order (NOT_FOUND while it has none).
    pub async fn processing(&self, order_id: Uuid) -> Result<OrderProcessing, tonic::Status> {
        self.client
            .clone()
            .get_order_processing(GetOrderProcessingRequest {
                order_id: order_id.to_string(),
            })
            .await
            .map(|response| response.into_inner().processing.unwrap_or_default())
    }

    /// Waits until the order's record is in `state`.
    pub async fn wait_for_state(&self, order_id: Uuid, state: ProcessingState) -> OrderProcessing {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let record = self.processing(order_id).await;
            if let Ok(record) = &record
                && record.state() == state
            {
                return record.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} never reached {state:?}; last {record:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every message in the stream on `<prefix>orders.<kind>`.
    pub async fn emitted(&self, kind: &str) -> Vec<StreamMessage> {
        let subject = self.stream_settings.subject_for(&format!("orders.{kind}"));
        self.stream
            .messages(&self.nats_url)
            .await
            .unwrap()
            .into_iter()
            .filter(|message| message.subject == subject)
            .collect()
    }

    /// A count from the processor's database.
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index(0).unwrap()
    }

    /// Redrives dead letter `id` with `reason`.
    pub async fn redrive(&self, id: u64, reason: &str) -> RedriveDeadLetterResponse {
        self.client
            .clone()
            .redrive_dead_letter(authorized(
                RedriveDeadLetterRequest {
                    id,
                    reason: reason.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Purges dead letter `id` with `reason`.
    pub async fn purge(
        &self,
        id: u64,
        reason: &str,
    ) -> Result<PurgeDeadLetterResponse, tonic::Status> {
        self.client
            .clone()
            .purge_dead_letter(authorized(
                PurgeDeadLetterRequest {
                    id,
                    reason: reason.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.server).await?
    }
}

/// The first page of dead letters.
pub async fn dead_letters(processor: &TestProcessor) -> Vec<DeadLetter> {
    processor
        .client
        .clone()
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

/// `authorization: Bearer <token>` on a request.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub use ordo_testkit::health_of;

/// `/metrics` at `addr`, parsed; panics if it does not parse.
pub async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    ordo_testkit::scrape_parsed(addr).await.unwrap()
}

pub use ordo_testkit::metric as sample;
