//! Orders placed through the API reach the stream exactly once each, an
//! order's events in the order they were written (invariants 1, 2 and 4).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::order::v1::CancelOrderRequest;
use ordo_testkit::eventually;

use crate::helpers::{TestApp, health_of, scrape, total, valid_request};

const ORDERS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_nudges_the_relay_instead_of_waiting_for_a_poll() {
    let database = ordo_testkit::TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let mut app = TestApp::spawn_on(database, url, |mut settings| {
        // Polls so rare that only the nudge can publish in time.
        settings.relay.poll_interval = Duration::from_secs(120);
        settings.relay.min_poll_interval = Duration::from_secs(120);
        settings.relay.lease_ttl = Duration::from_secs(60);
        settings
    })
    .await;
    // The actors' first rounds (at start) have passed once every lease is held.
    let relay = app.relay_held_partitions();
    eventually("every partition leased", Duration::from_secs(10), || {
        let relay = relay.clone();
        async move { relay.borrow().len() == 16 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    app.client.place_order(valid_request()).await.unwrap();
    eventually("the event published", Duration::from_secs(5), || async {
        app.count("outbox").await == 0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.stream.message_count(&app.nats_url).await, 1);
    app.stop().await.unwrap();
}
const CANCEL_EVERY: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_orders_reach_the_stream_exactly_once_in_order() {
    let app = TestApp::spawn_with_relay().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(app.new_client().await);
    }

    let order_ids: Vec<(usize, String)> = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            async move {
                let mut request = valid_request();
                request.customer_id = format!("cust-{}", n % 97);
                let order = client
                    .place_order(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .order
                    .unwrap();
                if n % CANCEL_EVERY == 0 {
                    client
                        .cancel_order(CancelOrderRequest {
                            order_id: order.order_id.clone(),
                            reason: "test".into(),
                        })
                        .await
                        .unwrap();
                }
                (n, order.order_id)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let expected_events = ORDERS + ORDERS / CANCEL_EVERY;

    eventually("the outbox to drain", Duration::from_secs(60), || async {
        app.count("outbox").await == 0
    })
    .await;
    assert_eq!(app.count("orders").await, ORDERS as i64);

    let messages = app.stream.messages(&app.nats_url).await.unwrap();
    assert_eq!(messages.len(), expected_events, "messages in the stream");
    let ids: HashSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), expected_events, "distinct Nats-Msg-Id");

    let mut per_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for message in &messages {
        let order_id = message.header("ce-subject").expect("ce-subject header");
        let kind = message.subject.rsplit('.').next().unwrap();
        per_order.entry(order_id).or_default().push(kind);
    }
    assert_eq!(per_order.len(), ORDERS);
    for (n, order_id) in &order_ids {
        let kinds = &per_order[order_id.as_str()];
        if n % CANCEL_EVERY == 0 {
            assert_eq!(kinds, &["placed", "cancelled"], "order {order_id}");
        } else {
            assert_eq!(kinds, &["placed"], "order {order_id}");
        }
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_taken_while_the_broker_is_down_and_published_when_it_returns() {
    let mut nats = ordo_testkit::NatsServer::start().await.unwrap();
    nats.stop().await.unwrap();
    let database = ordo_testkit::TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let nats_url = nats.url();
    let mut app = TestApp::spawn_on(database, url, |mut settings| {
        settings.relay.nats_url = nats_url;
        settings
    })
    .await;

    for _ in 0..5 {
        app.client.place_order(valid_request()).await.unwrap();
    }
    assert_eq!(app.count("outbox").await, 5);

    nats.restart().await.unwrap();
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        app.count("outbox").await == 0
    })
    .await;
    assert_eq!(app.stream.message_count(&nats.url()).await, 5);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_ten_seconds_opens_the_relay_breaker_and_loses_nothing() {
    use ordo_resilience::BreakerState;
    use tonic_health::pb::health_check_response::ServingStatus;

    let mut nats = ordo_testkit::NatsServer::start().await.unwrap();
    let database = ordo_testkit::TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let nats_url = nats.url();
    let mut app = TestApp::spawn_on(database, url, |mut settings| {
        settings.relay.nats_url = nats_url;
        settings.relay.publish_timeout = Duration::from_millis(500);
        settings.relay.publish_breaker = ordo_resilience::BreakerConfig {
            window: Duration::from_secs(2),
            buckets: 4,
            min_calls: 5,
            failure_rate: 0.5,
            cool_down: Duration::from_millis(500),
            half_open_probes: 2,
        };
        settings.health_probe_interval = Duration::from_millis(100);
        settings
    })
    .await;
    let breaker = app.relay_breaker.clone().unwrap();
    let mut states = breaker.watch();
    for _ in 0..20 {
        app.client.place_order(valid_request()).await.unwrap();
    }
    eventually(
        "the first orders published",
        Duration::from_secs(20),
        || async { app.count("outbox").await == 0 },
    )
    .await;

    nats.stop().await.unwrap();
    let outage = tokio::time::Instant::now();
    let mut placed = 20;
    let mut saw_nats_down = false;
    while outage.elapsed() < Duration::from_secs(10) {
        app.client.place_order(valid_request()).await.unwrap();
        placed += 1;
        assert_eq!(
            health_of(app.addr, "").await,
            Some(ServingStatus::Serving),
            "orders are still taken"
        );
        saw_nats_down |=
            health_of(app.addr, "ordo.deps.nats").await == Some(ServingStatus::NotServing);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(breaker.openings() >= 1, "the breaker opened");
    assert!(saw_nats_down, "health showed ordo.deps.nats NOT_SERVING");
    assert!(*states.borrow_and_update() != BreakerState::Closed);
    assert!(
        app.count("outbox").await > 0,
        "the outage's orders wait in the outbox"
    );
    eventually(
        "/metrics shows the backlog",
        Duration::from_secs(20),
        || async { total(&scrape(app.metrics_addr).await, "ordo_outbox_backlog_rows") > 0.0 },
    )
    .await;
    let during = scrape(app.metrics_addr).await;
    assert!(total(&during, "ordo_outbox_oldest_row_age_seconds") > 0.0);
    assert!(total(&during, "ordo_breaker_openings_total") >= 1.0);

    nats.restart().await.unwrap();
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        app.count("outbox").await == 0
    })
    .await;
    assert_eq!(app.stream.message_count(&nats.url()).await, placed);
    eventually("the breaker closed", Duration::from_secs(10), || async {
        breaker.state() == BreakerState::Closed
    })
    .await;
    eventually(
        "ordo.deps.nats SERVING again",
        Duration::from_secs(10),
        || async { health_of(app.addr, "ordo.deps.nats").await == Some(ServingStatus::Serving) },
    )
    .await;
    eventually(
        "/metrics shows the backlog drained",
        Duration::from_secs(20),
        || async { total(&scrape(app.metrics_addr).await, "ordo_outbox_backlog_rows") == 0.0 },
    )
    .await;
    let after = scrape(app.metrics_addr).await;
    assert!(total(&after, "ordo_outbox_published_total") >= placed as f64);
    assert!(total(&after, "ordo_outbox_commit_to_ack_seconds_count") >= placed as f64);
    let placed_ok = after
        .samples
        .iter()
        .find(|sample| {
            sample.metric == "ordo_grpc_server_handled_total"
                && sample.labels.get("grpc_service") == Some("ordo.order.v1.OrderService")
                && sample.labels.get("grpc_method") == Some("PlaceOrder")
                && sample.labels.get("grpc_code") == Some("OK")
        })
        .expect("PlaceOrder counted");
    assert!(matches!(placed_ok.value, prometheus_parse::Value::Counter(n) if n >= placed as f64));
    app.stop().await.unwrap();
}
