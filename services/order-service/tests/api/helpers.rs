//! Spawning the service for a test, and reading its database directly.

use std::net::SocketAddr;

use order_service::{Application, Settings};
use ordo_outbox::entity as outbox;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use ordo_testkit::{TestDatabase, TestStream, nats::shared_nats_url};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder, Statement};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The order service running for one test.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: OrderServiceClient<Channel>,
    pub db: DatabaseConnection,
    /// The stream this app's relay publishes into.
    pub stream: TestStream,
    pub nats_url: String,
    held: Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<i32>>>,
    /// Where the service serves `/metrics`.
    pub metrics_addr: std::net::SocketAddr,
    /// The relay's publish breaker, when the relay runs.
    pub relay_breaker: Option<std::sync::Arc<ordo_resilience::CircuitBreaker>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
    /// Dropped last: the database goes away with the test.
    _database: TestDatabase,
}

impl TestApp {
    /// The service without its outbox relay, so a test can inspect the
    /// outbox rows a request wrote before anything publishes them.
    pub async fn spawn() -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let url = database.url().to_owned();
        Self::spawn_on(database, url, |settings| Settings {
            outbox_relay: false,
            status_consumer: false,
            ..settings
        })
        .await
    }

    /// The service with its outbox relay publishing to this test's stream.
    pub async fn spawn_with_relay() -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let url = database.url().to_owned();
        Self::spawn_on(database, url, |settings| settings).await
    }

    /// Spawns over `database`, reached at `url`, with adjusted settings
    /// (the relay runs unless they turn it off).
    pub async fn spawn_on(
        database: TestDatabase,
        url: String,
        configure: impl FnOnce(Settings) -> Settings,
    ) -> Self {
        let stream = TestStream::new().await;
        let nats_url = shared_nats_url();
        let defaults = Settings::default();
        let settings = configure(Settings {
            database_url: url,
            database_max_connections: 8,
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
            relay: ordo_outbox::RelayConfig {
                nats_url: nats_url.clone(),
                stream: ordo_outbox::StreamSettings::isolated(&stream.name, &stream.subject_prefix),
                ..defaults.relay.clone()
            },
            ..defaults
        });
        let app = Application::build(settings).await.expect("service builds");
        let addr = app.local_addr();
        let held = app.relay().map(|relay| relay.watch_held());
        let relay_breaker = app.relay().map(|relay| relay.publish_breaker());
        let metrics_addr = app.metrics_addr().expect("metrics served");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = OrderServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("client connects");
        let db = database.connect().await.expect("direct connection");
        Self {
            addr,
            client,
            db,
            stream,
            nats_url,
            held,
            relay_breaker,
            metrics_addr,
            shutdown: Some(shutdown),
            server,
            _database: database,
        }
    }

    /// The partitions the app's relay holds (panics without a relay).
    pub fn relay_held_partitions(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::BTreeSet<i32>> {
        self.held.clone().expect("the app runs its relay")
    }

    /// A fresh client (its own HTTP/2 connection).
    pub async fn new_client(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.server).await?
    }

    /// Rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT count(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    /// Row counts of every table a write touches.
    pub async fn written(&self) -> [i64; 4] {
        [
            self.count("orders").await,
            self.count("order_lines").await,
            self.count("idempotency_keys").await,
            self.count("outbox").await,
        ]
    }

    /// Every outbox row, oldest first.
    pub async fn outbox(&self) -> Vec<outbox::Model> {
        outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn execute(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.unwrap();
    }
}

/// A valid request: two lines, 2×12.50 + 1×3.00 EUR.
pub fn valid_request() -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer_id: "cust-42".into(),
        lines: vec![line("BOOK-1", 2, 1250), line("PEN-7", 1, 300)],
        currency: "EUR".into(),
        idempotency_key: String::new(),
    }
}

pub fn line(sku: &str, quantity: u32, unit_price_minor: i64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price_minor,
    }
}

pub use ordo_testkit::health_of;

/// `/metrics` of the service, parsed; panics if it does not parse.
pub async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    ordo_testkit::scrape_parsed(addr)
        .await
        .expect("Prometheus text")
}

/// The sum of every sample of `metric` in `scrape`.
pub fn total(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    ordo_testkit::metric(scrape, metric, &[])
}

/// `rows` PENDING orders written by hand (no lines: their foreign key
/// checks would read the orders); their ids.
pub async fn orders_inserted(db: &DatabaseConnection, rows: u32) -> Vec<uuid::Uuid> {
    let sql = format!(
        "INSERT INTO orders (id, customer_id, currency, total_minor, status, correlation_id, created_at, updated_at) \
         SELECT gen_random_uuid(), 'grown', 'EUR', 100, 'PENDING', 'c', now(), now() \
         FROM generate_series(1, {rows}) RETURNING id"
    );
    db.query_all_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<uuid::Uuid>(0).unwrap())
        .collect()
}

/// A pool of one connection to `database`: the connection that plans a
/// statement is the one that runs it after the tables grew.
pub async fn one_connection(database: &TestDatabase) -> DatabaseConnection {
    ordo_migrations::database::connect(database.url(), 1)
        .await
        .unwrap()
}

/// (transactions, requests in them) group commit wrote for `kind`.
pub fn written_together(store: &order_service::store::OrderStore, kind: &str) -> (u64, u64) {
    store
        .group_commit_counters()
        .into_iter()
        .find(|(name, _)| *name == kind)
        .unwrap_or_else(|| panic!("no group commit counts for {kind}"))
        .1
        .get()
}
