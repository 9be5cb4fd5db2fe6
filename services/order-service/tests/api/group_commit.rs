//! Group commit: PlaceOrder and CancelOrder calls that arrive while a
//! commit is in flight are written together in the next transaction, and
//! each call still gets its own outcome. A trigger in the test's database
//! holds a chosen order's insert (or a cancellation's update) so that the
//! calls behind it queue up and are written as one batch.

use std::time::Duration;

use futures::future::join_all;
use ordo_proto::order::v1::{CancelOrderRequest, PlaceOrderRequest};
use ordo_testkit::TestDatabase;
use tonic::Code;

use crate::helpers::{TestApp, scrape, valid_request};

/// Inserting an order of customer `slow-<ms>` sleeps that long; updating an
/// order to status reason `slow-<ms>` too.
const SLOW_TRIGGERS: &str = r"
CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.customer_id LIKE 'slow-%' THEN
    PERFORM pg_sleep(substr(NEW.customer_id, 6)::int / 1000.0);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_slow_insert BEFORE INSERT ON orders
  FOR EACH ROW EXECUTE FUNCTION test_slow_insert();
CREATE FUNCTION test_slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status_reason LIKE 'slow-%' THEN
    PERFORM pg_sleep(substr(NEW.status_reason, 6)::int / 1000.0);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_slow_update BEFORE UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION test_slow_update();
";

/// The service with one group-commit writer (so what queues behind a
/// commit in flight is one batch), its database slowed on request.
async fn spawn_one_writer() -> TestApp {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let app = TestApp::spawn_on(database, url, |mut settings| {
        settings.outbox_relay = false;
        settings.status_consumer = false;
        settings.group_commit.writers = 1;
        settings
    })
    .await;
    app.execute(SLOW_TRIGGERS).await;
    app
}

fn order_of(customer: &str, key: &str, quantity: u32) -> PlaceOrderRequest {
    let mut request = valid_request();
    request.customer_id = customer.into();
    request.idempotency_key = key.into();
    request.lines[0].quantity = quantity;
    request
}

/// Starts a placement that holds the only writer for `ms`, and waits until
/// it is in flight.
async fn hold_the_writer(app: &TestApp, ms: u32) -> tokio::task::JoinHandle<String> {
    let mut client = app.new_client().await;
    let held = tokio::spawn(async move {
        client
            .place_order(order_of(&format!("slow-{ms}"), "", 1))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
            .order_id
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held
}

/// Sends every request at once, each on a connection of its own.
async fn place_all(
    app: &TestApp,
    requests: Vec<PlaceOrderRequest>,
) -> Vec<Result<String, tonic::Status>> {
    let mut calls = Vec::new();
    for request in requests {
        let mut client = app.new_client().await;
        calls.push(async move {
            client
                .place_order(request)
                .await
                .map(|response| response.into_inner().order.unwrap().order_id)
        });
    }
    join_all(calls).await
}

/// (transactions, requests) group commit wrote for `request`.
async fn group_counts(app: &TestApp, request: &str) -> (f64, f64) {
    let scrape = scrape(app.metrics_addr).await;
    let labels = [("request", request)];
    (
        ordo_testkit::metric(&scrape, "ordo_group_commit_transactions_total", &labels),
        ordo_testkit::metric(&scrape, "ordo_group_commit_requests_total", &labels),
    )
}

#[tokio::test]
async fn calls_arriving_during_a_commit_are_written_together_each_with_its_own_order() {
    let app = spawn_one_writer().await;
    let held = hold_the_writer(&app, 400).await;
    let requests = (0..20)
        .map(|n| order_of(&format!("cust-{n}"), "", 1))
        .collect();
    let placed: Vec<String> = place_all(&app, requests)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    held.await.unwrap();

    let distinct: std::collections::BTreeSet<&String> = placed.iter().collect();
    assert_eq!(distinct.len(), 20, "every call has an order of its own");
    assert_eq!(app.written().await, [21, 42, 0, 21]);
    // The held order alone, then the twenty that queued behind it together.
    assert_eq!(group_counts(&app, "place_order").await, (2.0, 21.0));
}

#[tokio::test]
async fn a_call_that_finds_the_writer_idle_is_written_at_once_alone() {
    let mut app = spawn_one_writer().await;
    for n in 0..3 {
        app.client
            .place_order(order_of(&format!("cust-{n}"), "", 1))
            .await
            .unwrap();
    }
    assert_eq!(group_counts(&app, "place_order").await, (3.0, 3.0));
}

#[tokio::test]
async fn a_batch_holding_one_key_twice_makes_one_order_and_both_calls_get_it() {
    let app = spawn_one_writer().await;
    let held = hold_the_writer(&app, 400).await;
    let results = place_all(
        &app,
        vec![
            order_of("cust-a", "checkout-1", 1),
            order_of("cust-b", "", 1),
            order_of("cust-a", "checkout-1", 1),
            order_of("cust-c", "", 1),
        ],
    )
    .await;
    held.await.unwrap();

    let ids: Vec<String> = results.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        ids[0], ids[2],
        "the duplicate replays the first call's order"
    );
    assert_ne!(ids[1], ids[3]);
    assert_eq!(app.written().await, [4, 8, 1, 4]);
    assert_eq!(group_counts(&app, "place_order").await, (2.0, 5.0));
}

#[tokio::test]
async fn an_idempotency_key_conflict_in_a_batch_fails_only_its_own_call() {
    let mut app = spawn_one_writer().await;
    let first = app
        .client
        .place_order(order_of("cust-a", "used-before", 1))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .order_id;
    let held = hold_the_writer(&app, 400).await;
    let results = place_all(
        &app,
        vec![
            order_of("cust-a", "used-before", 2), // another request: conflict
            order_of("cust-b", "", 1),
            order_of("cust-a", "used-before", 1), // the same request: replay
            order_of("cust-c", "new-key", 1),
            order_of("cust-c", "new-key", 3), // differs from the one beside it
            order_of("cust-d", "", 1),
        ],
    )
    .await;
    held.await.unwrap();

    assert_eq!(results[0].as_ref().unwrap_err().code(), Code::AlreadyExists);
    assert!(results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap(), &first);
    // Of two different requests under one new key, whichever reached the
    // batch first places the order; the other is refused.
    let new_key: Vec<_> = results[3..5].iter().map(Result::is_ok).collect();
    assert!(
        new_key == [true, false] || new_key == [false, true],
        "{results:?}"
    );
    let refused = results[3..5]
        .iter()
        .find_map(|result| result.as_ref().err());
    assert_eq!(refused.unwrap().code(), Code::AlreadyExists);
    assert!(results[5].is_ok());
    // first, held, cust-b, new-key, cust-d.
    assert_eq!(app.written().await, [5, 10, 2, 5]);
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_only_its_own_call_and_the_rest_of_its_batch_is_written() {
    let app = spawn_one_writer().await;
    app.execute("ALTER TABLE orders ADD CONSTRAINT test_refused CHECK (customer_id <> 'refused')")
        .await;
    let held = hold_the_writer(&app, 400).await;
    let results = place_all(
        &app,
        vec![
            order_of("cust-a", "", 1),
            order_of("refused", "key-refused", 1),
            order_of("cust-b", "key-b", 1),
            order_of("cust-c", "", 1),
        ],
    )
    .await;
    held.await.unwrap();

    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    let refused = results[1].as_ref().unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    // held + three, and only key-b: the refused call's key is not kept
    // (a retry after the fix places it).
    assert_eq!(app.written().await, [4, 8, 1, 4]);
}

fn cancel(order_id: &str, reason: &str) -> CancelOrderRequest {
    CancelOrderRequest {
        order_id: order_id.into(),
        reason: reason.into(),
    }
}

#[tokio::test]
async fn cancellations_in_one_batch_are_decided_one_by_one_in_arrival_order() {
    let mut app = spawn_one_writer().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            app.client
                .place_order(order_of(&format!("cust-{n}"), "", 1))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
                .order_id,
        );
    }
    // The first cancellation holds the writer; the rest queue behind it.
    let mut client = app.new_client().await;
    let held_id = ids[0].clone();
    let held = tokio::spawn(async move { client.cancel_order(cancel(&held_id, "slow-400")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let requests = [
        cancel(&ids[1], "first"),
        cancel(&unknown, "no such order"),
        cancel(&ids[1], "second"),
        cancel(&ids[2], "another order"),
    ];
    let mut calls = Vec::new();
    for request in requests {
        let mut client = app.new_client().await;
        calls.push(async move { client.cancel_order(request).await });
    }
    let results = join_all(calls).await;
    held.await.unwrap().unwrap();

    // Two cancellations of one order: whichever reached the batch first
    // cancels it, the other finds it CANCELLED.
    let (won, lost) = match (&results[0], &results[2]) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("one cancellation wins, one is refused: {other:?}"),
    };
    let reason = &won.get_ref().order.as_ref().unwrap().status_reason;
    assert!(reason == "first" || reason == "second", "{reason}");
    assert_eq!(lost.code(), Code::FailedPrecondition);
    assert_eq!(results[1].as_ref().unwrap_err().code(), Code::NotFound);
    assert!(results[3].is_ok());
    let cancelled = app.outbox().await;
    let events: Vec<&str> = cancelled
        .iter()
        .filter(|row| row.subject.ends_with("cancelled"))
        .map(|row| row.aggregate_id.as_str())
        .collect();
    assert_eq!(
        events.len(),
        3,
        "one OrderCancelled per cancelled order: {events:?}"
    );
    for id in &ids {
        assert_eq!(events.iter().filter(|event| **event == id).count(), 1);
    }
    assert_eq!(group_counts(&app, "cancel_order").await, (2.0, 5.0));
}

/// A crash while a batch's transaction is open acknowledges none of its
/// calls and leaves none of its orders: the batch before it was answered
/// only once it had committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_acknowledges_no_call_of_the_batch() {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let db = database.connect().await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(&db, SLOW_TRIGGERS)
        .await
        .unwrap();
    let nats = ordo_testkit::nats::shared_nats_url();
    let replica = ordo_testkit::replicas::Replica::start(
        env!("CARGO_BIN_EXE_order-service"),
        &[
            ("DATABASE_URL", &url),
            ("NATS_URL", &nats),
            ("OUTBOX_RELAY", "false"),
            ("STATUS_CONSUMER", "false"),
            ("GROUP_COMMIT_WRITERS", "1"),
            ("RUST_LOG", "warn"),
        ],
        "ordo.order.v1.OrderService",
    );
    replica.wait_ready().await;
    let connect = || async {
        ordo_proto::OrderServiceClient::connect(format!("http://{}", replica.addr))
            .await
            .unwrap()
    };

    // The first call holds the writer for 1 s; the four behind it form the
    // next batch, which one of them holds open for 5 s.
    let mut first_client = connect().await;
    let first =
        tokio::spawn(async move { first_client.place_order(order_of("slow-1000", "", 1)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut batch = Vec::new();
    for request in [
        order_of("cust-a", "", 1),
        order_of("slow-5000", "", 1),
        order_of("cust-b", "key-b", 1),
        order_of("cust-c", "", 1),
    ] {
        let mut client = connect().await;
        batch.push(tokio::spawn(
            async move { client.place_order(request).await },
        ));
    }
    assert!(first.await.unwrap().is_ok(), "the first call commits alone");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    drop(replica); // SIGKILL, the batch's transaction still open

    for call in batch {
        let answer = call.await.unwrap();
        assert!(
            answer.is_err(),
            "no call of the batch acknowledged: {answer:?}"
        );
    }
    // The open transaction dies with its connection.
    ordo_testkit::eventually(
        "the batch's transaction gone",
        Duration::from_secs(20),
        || {
            let db = db.clone();
            async move {
                let row = sea_orm::ConnectionTrait::query_one_raw(
                    &db,
                    sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                       AND state <> 'idle'"
                            .to_owned(),
                    ),
                )
                .await
                .unwrap()
                .unwrap();
                row.try_get::<i64>("", "n").unwrap() == 0
            }
        },
    )
    .await;
    for (table, expected) in [
        ("orders", 1),
        ("order_lines", 2),
        ("outbox", 1),
        ("idempotency_keys", 0),
    ] {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &db,
            sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM {table}"),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), expected, "{table}");
    }
}

/// Cancellations written together lock, read and move their orders by
/// index however the tables grew since the connection planned their
/// statements (a prepared statement's generic plan, made while a table was
/// small, lives until the table is analyzed again: a plan that scanned
/// the orders would read them all for every batch).
#[tokio::test]
async fn cancellations_written_together_stay_index_probes_as_the_orders_grow() {
    use order_service::domain::{CancelReason, CorrelationId, OrderId};
    use order_service::store::OrderStore;

    let database = TestDatabase::create().await.unwrap();
    let db = crate::helpers::one_connection(&database).await;
    let store = OrderStore::new(
        db.clone(),
        ordo_outbox::PartitionCount::new(4).unwrap(),
        None,
    )
    .with_group_commit(ordo_service_kit::group_commit::GroupCommitConfig::batching(
        64, 1,
    ));
    let batch = |orders: Vec<uuid::Uuid>| {
        let store = store.clone();
        async move {
            let cancellations = orders.into_iter().map(|order_id| {
                let store = store.clone();
                async move {
                    store
                        .order_cancel(
                            OrderId::from_uuid(order_id),
                            CancelReason::parse("changed my mind").unwrap(),
                            CorrelationId::generate(),
                        )
                        .await
                }
            });
            for cancelled in join_all(cancellations).await {
                cancelled.unwrap();
            }
        }
    };
    // Small tables while the statements are prepared and planned.
    crate::helpers::orders_inserted(&db, 300).await;
    let mut cancelled = 0;
    for _ in 0..20 {
        let orders = crate::helpers::orders_inserted(&db, 8).await;
        cancelled += orders.len();
        batch(orders).await;
    }
    crate::helpers::orders_inserted(&db, 30_000).await;
    for _ in 0..10 {
        let orders = crate::helpers::orders_inserted(&db, 8).await;
        cancelled += orders.len();
        batch(orders).await;
    }
    let (transactions, written) = crate::helpers::written_together(&store, "cancel_order");
    assert!(
        transactions < written,
        "the cancellations were written together"
    );
    let read = ordo_testkit::database::tuples_read_after_closing(
        db,
        database.url(),
        &["orders", "order_lines"],
    )
    .await
    .unwrap();
    assert!(
        read <= 8 * cancelled as i64,
        "{cancelled} cancellations read {read} tuples of the orders and their lines"
    );
}
