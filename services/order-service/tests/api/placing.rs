//! PlaceOrder writes the order, its lines and one OrderPlaced outbox row in
//! one transaction (DESIGN invariant 1).

use ordo_outbox::PartitionCount;
use ordo_proto::events::v1::OrderPlaced;
use ordo_proto::order::v1::OrderStatus;
use prost::Message as _;
use tonic::Request;

use crate::helpers::{TestApp, valid_request};

#[tokio::test]
async fn writes_the_order_and_exactly_one_matching_outbox_row() {
    let mut app = TestApp::spawn().await;
    let mut request = Request::new(valid_request());
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-123".parse().unwrap());

    let response = app.client.place_order(request).await.unwrap();

    assert_eq!(
        response.metadata().get("x-correlation-id").unwrap(),
        "corr-123"
    );
    let order = response.into_inner().order.unwrap();
    assert_eq!(order.status(), OrderStatus::Pending);
    assert_eq!(order.total_minor, 2 * 1250 + 300);
    assert_eq!(order.correlation_id, "corr-123");
    assert_eq!(order.lines, valid_request().lines);
    assert_eq!(app.written().await, [1, 2, 0, 1]);

    let rows = app.outbox().await;
    let row = &rows[0];
    assert_eq!(row.subject, "orders.placed");
    assert_eq!(row.event_type, "ordo.events.v1.OrderPlaced");
    assert_eq!(row.aggregate_type, "order");
    assert_eq!(row.aggregate_id, order.order_id);
    assert_eq!(
        row.partition,
        PartitionCount::default().partition_of(&order.order_id)
    );
    assert_eq!(row.headers["x-correlation-id"], "corr-123");
    assert_eq!(row.headers["ce-id"], row.event_id.to_string());
    assert_eq!(row.headers["ce-type"], "ordo.events.v1.OrderPlaced");
    assert_eq!(row.headers["ce-subject"], order.order_id);

    let event = OrderPlaced::decode(row.payload.as_slice()).unwrap();
    assert_eq!(event.event_id, row.event_id.to_string());
    assert_eq!(event.order_id, order.order_id);
    assert_eq!(event.customer_id, order.customer_id);
    assert_eq!(event.currency, order.currency);
    assert_eq!(event.total_minor, order.total_minor);
    assert_eq!(event.correlation_id, "corr-123");
    assert_eq!(event.occur_time, order.create_time);
    let event_lines: Vec<_> = event
        .lines
        .iter()
        .map(|line| (line.sku.as_str(), line.quantity, line.unit_price_minor))
        .collect();
    let order_lines: Vec<_> = order
        .lines
        .iter()
        .map(|line| (line.sku.as_str(), line.quantity, line.unit_price_minor))
        .collect();
    assert_eq!(event_lines, order_lines);
}

#[tokio::test]
async fn generates_a_correlation_id_when_none_is_sent() {
    let mut app = TestApp::spawn().await;
    let response = app.client.place_order(valid_request()).await.unwrap();
    let header = response
        .metadata()
        .get("x-correlation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let order = response.into_inner().order.unwrap();
    assert!(!header.is_empty());
    assert_eq!(order.correlation_id, header);
    assert_eq!(app.outbox().await[0].headers["x-correlation-id"], header);
}

#[tokio::test]
async fn uses_the_configured_partition_count() {
    let database = ordo_testkit::TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let mut app = TestApp::spawn_on(database, url, |mut settings| {
        settings.relay.partitions = PartitionCount::new(3).unwrap();
        settings.outbox_relay = false;
        settings
    })
    .await;
    for _ in 0..12 {
        app.client.place_order(valid_request()).await.unwrap();
    }
    let three = PartitionCount::new(3).unwrap();
    for row in app.outbox().await {
        assert!((0..3).contains(&row.partition));
        assert_eq!(row.partition, three.partition_of(&row.aggregate_id));
    }
}

#[tokio::test]
async fn a_failing_outbox_insert_writes_nothing_at_all() {
    let mut app = TestApp::spawn().await;
    app.execute(
        "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'outbox insert refused by test'; END $$; \
         CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox \
         FOR EACH ROW EXECUTE FUNCTION refuse_outbox();",
    )
    .await;
    let mut request = valid_request();
    request.idempotency_key = "atomic-1".into();

    let status = app.client.place_order(request.clone()).await.unwrap_err();

    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(
        !status.message().contains("refused by test"),
        "internal details leaked"
    );
    assert_eq!(app.written().await, [0, 0, 0, 0]);

    // Nothing was left behind, not even the idempotency key: once the outbox
    // accepts rows again, the same request goes through.
    app.execute("DROP TRIGGER refuse_outbox ON outbox").await;
    app.client.place_order(request).await.unwrap();
    assert_eq!(app.written().await, [1, 2, 1, 1]);
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight_and_ends_health_watches() {
    use tokio_stream::StreamExt as _;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let app = TestApp::spawn().await;
    let addr = app.addr;
    // Every order insert now takes a second: a request will be in flight.
    app.execute(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$; \
         CREATE TRIGGER slow_insert BEFORE INSERT ON orders \
         FOR EACH ROW EXECUTE FUNCTION slow_insert();",
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut client = app.new_client().await;
    let in_flight = tokio::spawn(async move { client.place_order(valid_request()).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(5), app.stop())
        .await
        .expect("stops well inside the 10 s drain deadline")
        .unwrap();

    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "did not wait for the request"
    );
    let placed = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert!(placed.into_inner().order.is_some());
    let mut statuses = Vec::new();
    while let Some(Ok(update)) = watch.next().await {
        statuses.push(update.status);
    }
    assert_eq!(
        statuses.last(),
        Some(&2),
        "last status NOT_SERVING: {statuses:?}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
