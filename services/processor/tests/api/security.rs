//! Every connection secured at once: PostgreSQL over TLS only (verify-full),
//! NATS requiring TLS with client certificates and an nkey user allowed only
//! Ordo's subjects, the three gRPC servers on mutual TLS, the processor
//! calling payments over mutual TLS, and the secrets read from files. One
//! order goes through it all; a wrong credential stops a start; and no
//! secret shows in debug logs or `/metrics`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_proto::client::{ClientTls, endpoint};
use ordo_proto::order::v1::{GetOrderRequest, OrderLine, OrderStatus, PlaceOrderRequest};
use ordo_proto::processor::v1::{GetOrderProcessingRequest, ListDeadLettersRequest};
use ordo_proto::{OrderServiceClient, ProcessorServiceClient};
use ordo_testkit::certs::{CertFiles, Pki, TestCa};
use ordo_testkit::{NatsServer, PrivatePostgres, TestDatabase};

const ADMIN_TOKEN: &str = "secure-admin-token-0123456789";

/// What an Ordo process may do on NATS: publish its events and dead
/// letters, use the JetStream API and ack, and hear replies. Nothing else.
const ORDO_PERMISSIONS: &str = r#"permissions: {
      publish: { allow: ["orders.>", "deadletter.orders.>", "$JS.API.>", "$JS.ACK.>"] }
      subscribe: { allow: ["_INBOX.>"] }
    }"#;

/// A CA, a server certificate for 127.0.0.1 and a client certificate;
/// PostgreSQL and NATS requiring TLS; an nkey user for Ordo.
struct SecureWorld {
    pki: Pki,
    ca: TestCa,
    server: CertFiles,
    client: CertFiles,
    postgres: PrivatePostgres,
    nats: NatsServer,
    nkey_seed_file: PathBuf,
    nkey_user: String,
}

/// NATS requiring TLS with client certificates, and `users` (nkeys)
/// allowed Ordo's subjects.
fn nats_config(server: &CertFiles, ca: &TestCa, users: &[String]) -> String {
    let users: Vec<String> = users
        .iter()
        .map(|user| format!("{{ nkey: \"{user}\", {ORDO_PERMISSIONS} }}"))
        .collect();
    format!(
        r#"
tls {{
  cert_file: "{cert}"
  key_file: "{key}"
  ca_file: "{ca}"
  verify: true
}}
authorization {{
  users = [
    {users}
  ]
}}
"#,
        cert = server.cert.display(),
        key = server.key.display(),
        ca = ca.ca_file().display(),
        users = users.join(",\n    "),
    )
}

impl SecureWorld {
    async fn start() -> Self {
        let pki = Pki::new().unwrap();
        let ca = pki.ca("ordo").unwrap();
        let server = ca.issue("server", &["127.0.0.1"]).unwrap();
        let client = ca.issue("client", &["ordo-client"]).unwrap();
        let postgres = PrivatePostgres::start(
            ordo_testkit::free_port().unwrap(),
            &["ordo", "ordo_processor"],
            Some(&server),
        )
        .await
        .unwrap();
        let user = nkeys::KeyPair::new_user();
        let nkey_seed_file = pki.dir().join("ordo.nk");
        std::fs::write(&nkey_seed_file, user.seed().unwrap()).unwrap();
        let nats = NatsServer::start_with_config(&nats_config(&server, &ca, &[user.public_key()]))
            .await
            .unwrap();
        Self {
            pki,
            ca,
            server,
            client,
            postgres,
            nats,
            nkey_seed_file,
            nkey_user: user.public_key(),
        }
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.pki.dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    fn database_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=verify-full&sslrootcert={}",
            self.postgres.port,
            self.ca.ca_file().display()
        )
    }

    /// The settings every service of the world shares: TLS everywhere,
    /// mutual on gRPC, and NATS's.
    fn common(&self) -> Vec<(String, String)> {
        let path = |path: &Path| path.display().to_string();
        [
            ("GRPC_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("METRICS_LISTEN_ADDR", "off".to_owned()),
            ("GRPC_TLS_CERT_FILE", path(&self.server.cert)),
            ("GRPC_TLS_KEY_FILE", path(&self.server.key)),
            ("GRPC_TLS_CLIENT_CA_FILE", path(self.ca.ca_file())),
            (
                "NATS_URL",
                format!("tls://127.0.0.1:{}", self.nats.addr().port()),
            ),
            ("NATS_TLS_CA_FILE", path(self.ca.ca_file())),
            ("NATS_TLS_CERT_FILE", path(&self.client.cert)),
            ("NATS_TLS_KEY_FILE", path(&self.client.key)),
            ("NATS_NKEY_SEED_FILE", path(&self.nkey_seed_file)),
            ("OUTBOX_POLL_INTERVAL", "100ms".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// The client side of mutual TLS.
    fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_file: Some(self.ca.ca_file().to_owned()),
            cert_file: Some(self.client.cert.clone()),
            key_file: Some(self.client.key.clone()),
            server_name: None,
        }
    }
}

fn lookup(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

fn with(mut pairs: Vec<(String, String)>, more: &[(&str, String)]) -> Vec<(String, String)> {
    for (name, value) in more {
        pairs.retain(|(key, _)| key != name);
        pairs.push(((*name).to_owned(), value.clone()));
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_through_with_every_connection_secured() {
    let world = SecureWorld::start().await;

    let payments_settings = payments_sim::Settings::from_lookup(lookup(world.common())).unwrap();
    let payments = payments_sim::Application::build(payments_settings)
        .await
        .unwrap();
    let payments_port = payments.local_addr().port();
    let (_stop_payments, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(payments.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let path = |path: &Path| path.display().to_string();
    let processor_env = with(
        world.common(),
        &[
            (
                "DATABASE_URL_FILE",
                world.file("processor-db", &world.database_url("ordo_processor")),
            ),
            ("PAYMENTS_URL", format!("https://127.0.0.1:{payments_port}")),
            ("PAYMENTS_TLS_CA_FILE", path(world.ca.ca_file())),
            ("PAYMENTS_TLS_CERT_FILE", path(&world.client.cert)),
            ("PAYMENTS_TLS_KEY_FILE", path(&world.client.key)),
            (
                "PROCESSOR_ADMIN_TOKEN_FILE",
                world.file("admin-token", &format!("{ADMIN_TOKEN}\n")),
            ),
        ],
    );
    let processor = processor::Application::build(
        processor::Settings::from_lookup(lookup(processor_env)).unwrap(),
    )
    .await
    .unwrap();
    let processor_port = processor.local_addr().port();
    let (_stop_processor, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(processor.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let orders_env = with(
        world.common(),
        &[(
            "DATABASE_URL_FILE",
            world.file("orders-db", &world.database_url("ordo")),
        )],
    );
    let orders = order_service::Application::build(
        order_service::Settings::from_lookup(lookup(orders_env)).unwrap(),
    )
    .await
    .unwrap();
    let orders_port = orders.local_addr().port();
    let (_stop_orders, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(orders.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let channel = endpoint(
        &format!("https://127.0.0.1:{orders_port}"),
        &world.client_tls(),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut client = OrderServiceClient::new(channel);
    let order = client
        .place_order(PlaceOrderRequest {
            customer_id: "secure".into(),
            lines: vec![OrderLine {
                sku: "sku-1".into(),
                quantity: 1,
                unit_price_minor: 1_500,
            }],
            currency: "EUR".into(),
            idempotency_key: "secure-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    ordo_testkit::eventually("the order confirmed", Duration::from_secs(60), || {
        let mut client = client.clone();
        let order_id = order.order_id.clone();
        async move {
            client
                .get_order(GetOrderRequest { order_id })
                .await
                .is_ok_and(|got| got.into_inner().order.unwrap().status() == OrderStatus::Confirmed)
        }
    })
    .await;

    // The processor's API, over mutual TLS, with the token read from its file.
    let channel = endpoint(
        &format!("https://127.0.0.1:{processor_port}"),
        &world.client_tls(),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut admin = ProcessorServiceClient::new(channel);
    let processing = admin
        .get_order_processing(GetOrderProcessingRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(processing.processing.is_some());
    let mut listing = tonic::Request::new(ListDeadLettersRequest::default());
    listing.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    admin.list_dead_letters(listing).await.unwrap();

    // The database connections were TLS: nothing else gets in.
    let plaintext = format!(
        "postgres://postgres@127.0.0.1:{}/ordo?sslmode=disable",
        world.postgres.port
    );
    let refused = sea_orm::Database::connect(plaintext).await.unwrap_err();
    assert!(
        refused.to_string().contains("no pg_hba.conf entry"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_nats_does_not_know_stops_the_start_with_the_reason() {
    let world = SecureWorld::start().await;
    let stranger = world.file("stranger.nk", &nkeys::KeyPair::new_user().seed().unwrap());
    let env = with(
        world.common(),
        &[
            ("DATABASE_URL", world.database_url("ordo_processor")),
            ("NATS_NKEY_SEED_FILE", stranger),
            ("OUTBOX_RELAY", "false".to_owned()),
        ],
    );
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        processor::Application::build(processor::Settings::from_lookup(lookup(env)).unwrap()),
    )
    .await
    .expect("a refusal is not waited out");
    let err = format!("{:#}", started.unwrap_err());
    assert!(err.contains("NATS") && err.contains("refused"), "{err}");
    assert!(err.to_lowercase().contains("authorization"), "{err}");

    // The relay's own connection says the same.
    let env = with(
        world.common(),
        &[
            ("DATABASE_URL", world.database_url("ordo")),
            (
                "NATS_NKEY_SEED_FILE",
                world.file("stranger2.nk", &nkeys::KeyPair::new_user().seed().unwrap()),
            ),
        ],
    );
    let err = order_service::Application::build(
        order_service::Settings::from_lookup(lookup(env)).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("refused"), "{err:#}");

    // Without a client certificate NATS's TLS refuses before any credential.
    let env: Vec<(String, String)> = with(
        world.common(),
        &[
            ("DATABASE_URL", world.database_url("ordo_processor")),
            ("OUTBOX_RELAY", "false".to_owned()),
        ],
    )
    .into_iter()
    .filter(|(name, _)| !name.starts_with("NATS_TLS_CERT") && !name.starts_with("NATS_TLS_KEY"))
    .collect();
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        processor::Application::build(processor::Settings::from_lookup(lookup(env)).unwrap()),
    )
    .await
    .expect("a refusal is not waited out");
    let err = format!("{:#}", started.unwrap_err());
    assert!(err.contains("NATS") && err.contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_revoked_while_running_turns_nats_health_not_serving_and_back() {
    let world = SecureWorld::start().await;
    let env = with(
        world.common(),
        &[
            ("DATABASE_URL", world.database_url("ordo_processor")),
            ("HEALTH_PROBE_INTERVAL", "200ms".to_owned()),
            ("GRPC_TLS_CLIENT_CA_FILE", String::new()),
        ],
    );
    let processor =
        processor::Application::build(processor::Settings::from_lookup(lookup(env)).unwrap())
            .await
            .unwrap();
    let addr = processor.local_addr();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(processor.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let tls = ClientTls {
        ca_file: Some(world.ca.ca_file().to_owned()),
        ..ClientTls::default()
    };
    let nats_health =
        || async { ordo_testkit::health_over(addr, Some(&tls), "ordo.deps.nats").await };
    use tonic_health::pb::health_check_response::ServingStatus;
    ordo_testkit::eventually("NATS healthy", Duration::from_secs(30), || async {
        nats_health().await == Some(ServingStatus::Serving)
    })
    .await;

    // The operator removes Ordo's user and reloads NATS.
    let nobody = nkeys::KeyPair::new_user().public_key();
    world
        .nats
        .reload_config(&nats_config(&world.server, &world.ca, &[nobody]))
        .await
        .unwrap();
    ordo_testkit::eventually("NATS NOT_SERVING", Duration::from_secs(30), || async {
        nats_health().await == Some(ServingStatus::NotServing)
    })
    .await;
    assert_eq!(
        ordo_testkit::health_over(addr, Some(&tls), "ordo.liveness").await,
        Some(ServingStatus::Serving),
        "the process lives on"
    );

    // Restored: the client reconnects by itself.
    world
        .nats
        .reload_config(&nats_config(
            &world.server,
            &world.ca,
            std::slice::from_ref(&world.nkey_user),
        ))
        .await
        .unwrap();
    ordo_testkit::eventually("NATS healthy again", Duration::from_secs(60), || async {
        nats_health().await == Some(ServingStatus::Serving)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_server_certificate_for_another_host() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("db").unwrap();
    let postgres = PrivatePostgres::start(
        ordo_testkit::free_port().unwrap(),
        &["ordo"],
        Some(&ca.issue("db", &["db.internal"]).unwrap()),
    )
    .await
    .unwrap();
    let url = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/ordo?sslmode={mode}&sslrootcert={}",
            postgres.port,
            ca.ca_file().display()
        )
    };
    let settings = |mode: &str| {
        order_service::Settings::from_lookup(lookup(vec![
            ("DATABASE_URL".to_owned(), url(mode)),
            ("GRPC_LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("METRICS_LISTEN_ADDR".to_owned(), "off".to_owned()),
            ("OUTBOX_RELAY".to_owned(), "false".to_owned()),
            ("STATUS_CONSUMER".to_owned(), "false".to_owned()),
        ]))
        .unwrap()
    };
    let err = order_service::Application::build(settings("verify-full"))
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("DATABASE_URL"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // verify-ca checks the CA and not the name: the same server is accepted.
    order_service::Application::build(settings("verify-ca"))
        .await
        .unwrap();
    // A CA that did not issue the server's certificate is refused by both.
    let other = pki.ca("other").unwrap();
    let foreign = format!(
        "postgres://postgres@127.0.0.1:{}/ordo?sslmode=verify-ca&sslrootcert={}",
        postgres.port,
        other.ca_file().display()
    );
    assert!(sea_orm::Database::connect(foreign).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_in_debug_logs_or_metrics() {
    let secrets = SecretSet::new();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ user: ordo, password: \"{}\" }}\n",
        secrets.nats_password
    ))
    .await
    .unwrap();
    let database = TestDatabase::create_for(ordo_testkit::Schema::Processor)
        .await
        .unwrap();
    let database_url = database.url().replacen(
        "postgres:postgres@",
        &format!("postgres:{}@", secrets.database_password),
        1,
    );
    assert!(
        database_url.contains(&secrets.database_password),
        "{database_url}"
    );
    let dir = Pki::new().unwrap();
    let write = |name: &str, value: &str| {
        let path = dir.dir().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let grpc_port = ordo_testkit::free_port().unwrap();
    let metrics_port = ordo_testkit::free_port().unwrap();
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .env("RUST_LOG", "debug")
        .env("DATABASE_URL_FILE", write("db", &database_url))
        .env("NATS_URL", nats.url())
        .env("NATS_USER", "ordo")
        .env(
            "NATS_PASSWORD_FILE",
            write("nats-password", &secrets.nats_password),
        )
        .env(
            "PROCESSOR_ADMIN_TOKEN_FILE",
            write("token", &secrets.admin_token),
        )
        .env(
            "PROCESSOR_ADMIN_TOKENS",
            format!("ops:{}", secrets.named_token),
        )
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.local_addr().unwrap()),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("api-key={}", secrets.otlp_key),
        )
        .env("GRPC_LISTEN_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("METRICS_LISTEN_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("PAYMENTS_URL", "http://127.0.0.1:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let grpc = format!("http://127.0.0.1:{grpc_port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let channel = loop {
        let endpoint = tonic::transport::Endpoint::from_shared(grpc.clone()).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the processor never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The tokens travel through the server's request path with debug on.
    let mut admin = ProcessorServiceClient::new(channel);
    for token in [
        &secrets.admin_token,
        &secrets.named_token,
        &secrets.wrong_token,
    ] {
        let mut listing = tonic::Request::new(ListDeadLettersRequest::default());
        listing
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let _ = admin.list_dead_letters(listing).await;
    }
    let metrics =
        ordo_testkit::scrape_metrics(format!("127.0.0.1:{metrics_port}").parse().unwrap())
            .await
            .unwrap();
    assert!(metrics.contains("ordo_grpc_server_handled_total"));
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("processor listening"), "{logs}");
    assert!(logs.contains("DEBUG"), "debug logs were on");
    for secret in secrets.all() {
        assert!(!logs.contains(secret), "a secret in the logs: {secret}");
        assert!(!metrics.contains(secret), "a secret in /metrics: {secret}");
    }
}

/// Distinct random secrets, so a leak of any is found by a substring.
struct SecretSet {
    database_password: String,
    nats_password: String,
    admin_token: String,
    named_token: String,
    wrong_token: String,
    otlp_key: String,
}

impl SecretSet {
    fn new() -> Self {
        let secret = |kind: &str| format!("{kind}{}", uuid::Uuid::new_v4().simple());
        Self {
            database_password: secret("pgpw"),
            nats_password: secret("natspw"),
            admin_token: secret("admintoken"),
            named_token: secret("opstoken"),
            wrong_token: secret("wrongtoken"),
            otlp_key: secret("otlpkey"),
        }
    }

    fn all(&self) -> [&str; 6] {
        [
            &self.database_password,
            &self.nats_password,
            &self.admin_token,
            &self.named_token,
            &self.wrong_token,
            &self.otlp_key,
        ]
    }
}
