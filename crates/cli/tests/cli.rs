//! The built `ordo` binary against real services: the order service, the
//! processor and the payment simulator started in this process on port 0,
//! each test with its own databases (testkit, from the migrated templates)
//! and its own NATS stream on the shared server. `ordo` runs as a child
//! process with nothing but the environment a test gives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use ordo_outbox::{RelayConfig, StreamSettings};
use ordo_proto::order::v1::{GetOrderRequest, OrderLine, OrderStatus, PlaceOrderRequest};
use ordo_proto::payments::v1::{Faults, GetPaymentCountsRequest, SetFaultsRequest};
use ordo_proto::processor::v1::{GetOrderProcessingRequest, ProcessingState};
use ordo_proto::{OrderServiceClient, PaymentServiceClient, ProcessorServiceClient};
use ordo_resilience::Backoff;
use ordo_testkit::{Schema, TestDatabase, TestStream, nats::shared_nats_url};
use serde_json::Value;
use tokio::sync::oneshot;
use tonic::transport::Channel;

const TOKEN: &str = "cli-test-admin-token-0123456789";

/// Longest one `ordo` run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// What one `ordo` run did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }
}

/// Runs `ordo` with `args` and only `env`, within the deadline.
async fn ordo(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(&args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ordo starts");
    let pid = child.id();
    let waited = tokio::time::timeout(
        RUN_DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("ordo {args:?} did not exit within {RUN_DEADLINE:?}");
    };
    let output = output.unwrap().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The three services of one test.
struct Pipeline {
    order_url: String,
    processor_url: String,
    orders: OrderServiceClient<Channel>,
    processor: ProcessorServiceClient<Channel>,
    payments: PaymentServiceClient<Channel>,
    _stops: Vec<oneshot::Sender<()>>,
    _databases: [TestDatabase; 2],
}

impl Pipeline {
    async fn start() -> Self {
        let stream = TestStream::new().await;
        let mut stream_settings = StreamSettings::isolated(&stream.name, &stream.subject_prefix);
        stream_settings.duplicate_window = Duration::from_secs(1);
        let nats_url = shared_nats_url();
        let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await.unwrap());
        ordo_outbox::stream::ensure_stream(&jetstream, &stream_settings)
            .await
            .unwrap();
        let mut stops = Vec::new();
        let mut stopper = || {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            async move {
                let _ = stopped.await;
            }
        };

        let payments = payments_sim::Application::build(payments_sim::Settings {
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_listen_addr: None,
            ..Default::default()
        })
        .await
        .unwrap();
        let payments_url = format!("http://{}", payments.local_addr());
        tokio::spawn(payments.run_until_stopped(stopper()));

        let processor_db = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let mut settings = processor::Settings {
            database_url: processor_db.url().to_owned(),
            database_max_connections: 4,
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_listen_addr: None,
            ..Default::default()
        };
        settings.relay.nats_url = nats_url.clone();
        settings.relay.stream = stream_settings.clone();
        settings.relay.poll_interval = Duration::from_millis(100);
        settings.relay.min_poll_interval = Duration::from_millis(5);
        settings.payments.url = payments_url.clone();
        settings.payments.timeout = Duration::from_millis(500);
        settings.payments.retry_backoff =
            Backoff::full_jitter(Duration::from_millis(2), Duration::from_millis(10));
        // Every failure is an attempt: messages reach the dead letters
        // instead of waiting behind an open breaker.
        settings.payments.breaker.min_calls = u32::MAX;
        settings.consuming.backoff =
            Backoff::full_jitter(Duration::from_millis(10), Duration::from_millis(80));
        settings.consuming.ack_wait = Duration::from_secs(2);
        settings.admin_token = Some(TOKEN.to_owned().into());
        let processor = processor::Application::build(settings).await.unwrap();
        let processor_url = format!("http://{}", processor.local_addr());
        tokio::spawn(processor.run_until_stopped(stopper()));

        let orders_db = TestDatabase::create().await.unwrap();
        let defaults = order_service::Settings::default();
        let order_service = order_service::Application::build(order_service::Settings {
            database_url: orders_db.url().to_owned(),
            database_max_connections: 4,
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_listen_addr: None,
            relay: RelayConfig {
                nats_url,
                stream: stream_settings,
                poll_interval: Duration::from_millis(100),
                ..defaults.relay.clone()
            },
            admin_tokens: vec![("admin".to_owned(), TOKEN.to_owned().into())],
            ..defaults
        })
        .await
        .unwrap();
        let order_url = format!("http://{}", order_service.local_addr());
        tokio::spawn(order_service.run_until_stopped(stopper()));

        Self {
            orders: OrderServiceClient::connect(order_url.clone())
                .await
                .unwrap(),
            processor: ProcessorServiceClient::connect(processor_url.clone())
                .await
                .unwrap(),
            payments: PaymentServiceClient::connect(payments_url).await.unwrap(),
            order_url,
            processor_url,
            _stops: stops,
            _databases: [processor_db, orders_db],
        }
    }

    /// `ordo` pointed at this pipeline, with the admin token.
    async fn ordo(&self, args: &[&str]) -> Run {
        self.ordo_with(args, &[("ORDO_ADMIN_TOKEN", TOKEN)]).await
    }

    /// `ordo` pointed at this pipeline, with `env` besides.
    async fn ordo_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec![
            ("ORDO_ORDER_URL", self.order_url.as_str()),
            ("ORDO_PROCESSOR_URL", self.processor_url.as_str()),
        ];
        all.extend_from_slice(env);
        ordo(args, &all).await
    }

    async fn outage(&self, outage: bool) {
        self.payments
            .clone()
            .set_faults(SetFaultsRequest {
                faults: Some(Faults {
                    outage,
                    decline_above_minor: 1_000_000,
                    ..Faults::default()
                }),
            })
            .await
            .unwrap();
    }

    async fn place(&self, customer: &str, correlation_id: &str) -> String {
        let mut request = tonic::Request::new(PlaceOrderRequest {
            customer_id: customer.to_owned(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 2,
                unit_price_minor: 900,
            }],
            currency: "EUR".into(),
            idempotency_key: String::new(),
        });
        request
            .metadata_mut()
            .insert("x-correlation-id", correlation_id.parse().unwrap());
        self.orders
            .clone()
            .place_order(request)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
            .order_id
    }

    async fn processing_state(&self, order_id: &str) -> Option<ProcessingState> {
        self.processor
            .clone()
            .get_order_processing(GetOrderProcessingRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .ok()
            .and_then(|response| response.into_inner().processing)
            .map(|processing| processing.state())
    }

    async fn wait_for_state(&self, order_id: &str, state: ProcessingState) {
        ordo_testkit::eventually(
            &format!("order {order_id} {state:?}"),
            Duration::from_secs(60),
            || async { self.processing_state(order_id).await == Some(state) },
        )
        .await;
    }

    async fn status(&self, order_id: &str) -> OrderStatus {
        self.orders
            .clone()
            .get_order(GetOrderRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
            .status()
    }
}

fn entries<'a>(timeline: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_orders_timeline_shows_its_failed_attempts_and_why() {
    let pipeline = Pipeline::start().await;
    pipeline.outage(true).await;
    let order_id = pipeline.place("cli-stuck", "cli-stuck-1").await;
    pipeline
        .wait_for_state(&order_id, ProcessingState::DeadLettered)
        .await;

    let table = pipeline.ordo(&["order", "show", &order_id]).await;
    table.assert_code(0);
    assert!(
        table.stdout.contains("status          pending"),
        "{table:#?}"
    );
    assert!(
        table
            .stdout
            .contains("processor       dead_lettered, 5 failed attempts"),
        "{table:#?}"
    );
    let failed_rows: Vec<&str> = table
        .stdout
        .lines()
        .filter(|line| line.contains("  attempt_failed  "))
        .collect();
    assert_eq!(failed_rows.len(), 5, "{table:#?}");
    assert!(
        failed_rows
            .iter()
            .all(|row| row.contains(" / payment_unavailable  ")),
        "{table:#?}"
    );

    let shown = pipeline
        .ordo(&[
            "order",
            "show",
            &order_id,
            "-o",
            "json",
            "--jaeger",
            "http://jaeger.example:16686/",
        ])
        .await;
    shown.assert_code(0);
    let view = shown.json();
    assert_eq!(view["order"]["status"], "pending");
    assert_eq!(view["order"]["correlation_id"], "cli-stuck-1");
    assert_eq!(view["processing"]["state"], "dead_lettered");
    assert_eq!(view["warnings"], serde_json::json!([]));
    let failed = entries(&view["timeline"], "attempt_failed");
    assert_eq!(failed.len(), 5, "{view:#}");
    for entry in &failed {
        assert_eq!(entry["service"], "processor");
        assert_eq!(entry["code"], "payment_unavailable");
        assert!(!entry["actor"].as_str().unwrap().is_empty());
    }
    let services: std::collections::BTreeSet<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["service"].as_str().unwrap())
        .collect();
    assert!(services.contains("order-service"), "{view:#}");
    let times: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["time"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|time| chrono::DateTime::parse_from_rfc3339(time).unwrap())
        .collect();
    assert!(parsed.is_sorted(), "oldest first: {times:?}");
    let trace = view["trace_url"].as_str().unwrap();
    assert!(
        trace.starts_with("http://jaeger.example:16686/trace/")
            || trace.contains("tags=%7B%22correlation_id%22%3A%22cli-stuck-1%22%7D"),
        "{trace}"
    );

    let listed = pipeline.ordo(&["dlq", "list", "-o", "json"]).await;
    listed.assert_code(0);
    let letters = listed.json();
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["order_id"], order_id.as_str());
    assert_eq!(letters[0]["code"], "payment_unavailable");
    assert_eq!(letters[0]["attempts"], 5);
    let id = letters[0]["id"].to_string();
    let detail = pipeline.ordo(&["dlq", "show", &id]).await;
    detail.assert_code(0);
    let attempts: Vec<&str> = detail
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("ATTEMPT"))
        .skip(1)
        .collect();
    assert_eq!(attempts.len(), 5, "{detail:#?}");
    assert!(
        attempts
            .iter()
            .all(|row| row.contains("  payment_unavailable  ")),
        "{detail:#?}"
    );

    let lag = pipeline.ordo(&["lag", "-o", "json"]).await;
    lag.assert_code(0);
    let lag = lag.json();
    let names: Vec<&str> = lag["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order-service", "processor"], "{lag:#}");
    assert_eq!(
        lag["services"][1]["dead_letters"][0]["messages"], 1,
        "{lag:#}"
    );
    assert!(
        !lag["services"][0]["outbox"]["partitions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    pipeline.ordo(&["lag"]).await.assert_code(0);

    let listed = pipeline
        .ordo(&["order", "list", "--customer", "cli-stuck", "-o", "json"])
        .await;
    listed.assert_code(0);
    assert_eq!(listed.json()["orders"][0]["order_id"], order_id.as_str());

    let unknown = pipeline
        .ordo(&["order", "show", "0190f3a2-1111-7222-8333-444455556666"])
        .await;
    unknown.assert_code(3);
    pipeline
        .ordo(&["order", "show", "not-a-uuid"])
        .await
        .assert_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_exits_4_and_one_silent_service_is_a_warning() {
    let pipeline = Pipeline::start().await;
    let wrong = [("ORDO_ADMIN_TOKEN", "not-the-token-0123456789")];
    for args in [
        &["lag"][..],
        &["dlq", "list"],
        &["--token", "wrong-token-0123456789", "lag"],
    ] {
        let run = pipeline.ordo_with(args, &wrong).await;
        run.assert_code(4);
        assert!(run.stderr.contains("unauthenticated"), "{run:#?}");
    }
    pipeline.ordo_with(&["lag"], &[]).await.assert_code(4);

    // Parked events: none here, and an unknown one is not found.
    for (service, name) in [("order", "order-service"), ("processor", "processor")] {
        let parked = pipeline
            .ordo(&["parked", "list", "--service", service, "-o", "json"])
            .await;
        parked.assert_code(0);
        assert_eq!(
            parked.json(),
            serde_json::json!({"service": name, "events": []})
        );
    }
    pipeline
        .ordo(&[
            "parked",
            "discard",
            "--service",
            "processor",
            "999",
            "--reason",
            "gone",
        ])
        .await
        .assert_code(3);

    // The processor's address answers nothing: lag shows the order service.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let half = pipeline
        .ordo(&["--processor", &nowhere, "lag", "-o", "json"])
        .await;
    half.assert_code(0);
    let view = half.json();
    assert_eq!(view["services"].as_array().unwrap().len(), 1, "{view:#}");
    assert!(
        view["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("did not answer: processor: unavailable"),
        "{view:#}"
    );
    assert!(
        half.stderr.contains("warning: did not answer: processor"),
        "{half:#?}"
    );
    let none = pipeline
        .ordo(&["--processor", &nowhere, "--order-service", &nowhere, "lag"])
        .await;
    none.assert_code(5);

    // The same for an order: the order service's side, and a warning.
    let order_id = pipeline.place("cli-half", "cli-half-1").await;
    let shown = pipeline
        .ordo(&[
            "--processor",
            &nowhere,
            "order",
            "show",
            &order_id,
            "-o",
            "json",
        ])
        .await;
    shown.assert_code(0);
    let view = shown.json();
    assert_eq!(view["order"]["order_id"], order_id.as_str());
    assert_eq!(view["processing"], Value::Null);
    assert!(
        view["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("processor did not answer (unavailable"),
        "{view:#}"
    );
    assert!(!entries(&view["timeline"], "placed").is_empty(), "{view:#}");
    pipeline
        .ordo(&[
            "--processor",
            &nowhere,
            "--order-service",
            &nowhere,
            "order",
            "show",
            &order_id,
        ])
        .await
        .assert_code(5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_redrive_dry_run_changes_nothing_and_the_real_one_settles_each_order_once() {
    let pipeline = Pipeline::start().await;
    pipeline.outage(true).await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(
            pipeline
                .place(&format!("cli-group-{n}"), &format!("cli-group-{n}"))
                .await,
        );
    }
    for order_id in &orders {
        pipeline
            .wait_for_state(order_id, ProcessingState::DeadLettered)
            .await;
    }

    let grouped = pipeline
        .ordo(&["dlq", "list", "--group", "-o", "json"])
        .await;
    grouped.assert_code(0);
    let groups = grouped.json();
    let groups = groups["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["code"], "payment_unavailable");
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    pipeline
        .ordo(&["dlq", "list", "--group"])
        .await
        .assert_code(0);
    pipeline.outage(false).await;

    let dry = pipeline
        .ordo(&[
            "dlq",
            "redrive",
            "--fingerprint",
            &fingerprint,
            "--reason",
            "checking",
            "--dry-run",
        ])
        .await;
    dry.assert_code(0);
    assert_eq!(
        dry.stdout
            .lines()
            .filter(|line| line.starts_with("would "))
            .count(),
        3,
        "{dry:#?}"
    );
    assert!(
        dry.stdout
            .ends_with("redrive: 0 done, 3 would, 0 failed, 0 not_found\n"),
        "{dry:#?}"
    );
    let still = pipeline.ordo(&["dlq", "list", "-o", "json"]).await.json();
    assert_eq!(
        still["dead_letters"].as_array().unwrap().len(),
        3,
        "nothing moved"
    );
    for order_id in &orders {
        assert_eq!(pipeline.status(order_id).await, OrderStatus::Pending);
    }

    let done = pipeline
        .ordo(&[
            "dlq",
            "redrive",
            "--fingerprint",
            &fingerprint,
            "--reason",
            "provider back",
            "--rate",
            "20",
            "-o",
            "json",
        ])
        .await;
    done.assert_code(0);
    let done = done.json();
    assert_eq!(done["summary"]["done"], 3, "{done:#}");
    assert_eq!(done["outcomes"].as_array().unwrap().len(), 3);
    for order_id in &orders {
        ordo_testkit::eventually(
            &format!("order {order_id} confirmed"),
            Duration::from_secs(60),
            || async { pipeline.status(order_id).await == OrderStatus::Confirmed },
        )
        .await;
        let counts = pipeline
            .payments
            .clone()
            .get_payment_counts(GetPaymentCountsRequest {
                order_id: order_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(counts.approvals, 1, "charged once: {counts:?}");
    }
    let left = pipeline.ordo(&["dlq", "list", "-o", "json"]).await.json();
    assert_eq!(left["dead_letters"], serde_json::json!([]));

    let shown = pipeline
        .ordo(&["order", "show", &orders[0], "-o", "json"])
        .await
        .json();
    assert_eq!(shown["order"]["status"], "confirmed");
    let decisions = entries(&shown["timeline"], "operator");
    assert_eq!(decisions.len(), 1, "{shown:#}");
    assert_eq!(decisions[0]["actor"], "admin");
    assert!(
        decisions[0]["text"]
            .as_str()
            .unwrap()
            .contains("provider back"),
        "{shown:#}"
    );
}

#[tokio::test]
async fn a_bulk_run_without_a_reason_or_a_selection_is_a_usage_error_and_calls_nothing() {
    // A processor address that counts connections.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let env = [
        ("ORDO_PROCESSOR_URL", url.as_str()),
        ("ORDO_ADMIN_TOKEN", TOKEN),
    ];
    for args in [
        &["dlq", "purge", "--all"][..],
        &["dlq", "redrive", "7"],
        &["dlq", "purge", "--reason", "why"],
        &["dlq", "purge", "--reason", " ", "--all"],
        &[
            "dlq",
            "redrive",
            "7",
            "--code",
            "undecodable",
            "--reason",
            "why",
        ],
        &["dlq", "redrive", "--all", "--reason", "why", "--rate", "0"],
        &["dlq", "list", "--since", "last tuesday"],
    ] {
        let run = ordo(args, &env).await;
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    assert!(
        listener.accept().is_err(),
        "no connection was made to the processor"
    );
}

#[tokio::test]
async fn help_version_and_completions_work_without_services() {
    let help = ordo(&["--help"], &[]).await;
    help.assert_code(0);
    for text in [
        "Exit codes:",
        "3  not found",
        "4  unauthenticated",
        "5  unavailable",
        "ORDO_ORDER_URL",
        "ORDO_ADMIN_TOKEN_FILE",
        "order",
        "dlq",
        "lag",
        "completions",
    ] {
        assert!(help.stdout.contains(text), "{text} missing: {help:#?}");
    }
    let version = ordo(&["--version"], &[]).await;
    version.assert_code(0);
    assert!(version.stdout.starts_with("ordo 0.1.0 ("), "{version:#?}");

    let bash = ordo(&["completions", "bash"], &[]).await;
    bash.assert_code(0);
    assert!(bash.stdout.contains("_ordo()"), "{bash:#?}");
    assert!(bash.stdout.contains("redrive"), "subcommands complete");
    for shell in ["zsh", "fish"] {
        let script = ordo(&["completions", shell], &[]).await;
        script.assert_code(0);
        assert!(script.stdout.contains("ordo"), "{script:#?}");
    }
    ordo(&["completions", "tcsh"], &[]).await.assert_code(2);
    ordo(&["frobnicate"], &[]).await.assert_code(2);
}
