//! The processor's verdicts move orders on once each: through the inbox, a
//! re-published verdict has no second effect, a verdict that cannot apply is
//! recorded and ignored, an undecodable one is recorded and not retried.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use ordo_proto::events::v1::{OrderConfirmed, OrderRejected};
use ordo_proto::order::v1::{GetOrderRequest, OrderStatus};
use ordo_testkit::{TestDatabase, eventually};
use prost::Message as _;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{TestApp, valid_request};

async fn publish(app: &TestApp, kind: &str, message_id: &str, payload: Vec<u8>) {
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    jetstream::new(client)
        .send_publish(
            format!("{}orders.{kind}", app.stream.subject_prefix),
            PublishMessage::build()
                .payload(payload.into())
                .message_id(message_id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

fn confirmed(order_id: &str) -> Vec<u8> {
    OrderConfirmed {
        order_id: order_id.into(),
        payment_id: "pay-1".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn rejected(order_id: &str, reason: &str) -> Vec<u8> {
    OrderRejected {
        order_id: order_id.into(),
        reason: reason.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

async fn status_of(app: &TestApp, order_id: &str) -> (OrderStatus, String) {
    let order = app
        .client
        .clone()
        .get_order(GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    (order.status(), order.status_reason)
}

async fn inbox_outcome(app: &TestApp, message_id: &str) -> Option<String> {
    app.db
        .query_one_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT outcome FROM inbox WHERE message_id = $1",
            [message_id.into()],
        ))
        .await
        .unwrap()
        .map(|row| row.try_get::<String>("", "outcome").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_move_orders_once_each_through_the_inbox() {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let app = TestApp::spawn_on(database, url, |mut settings| {
        // A short window, so a re-publish gets past JetStream to the inbox.
        settings.relay.stream.duplicate_window = Duration::from_secs(1);
        settings
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let order = app
            .client
            .clone()
            .place_order(valid_request())
            .await
            .unwrap();
        ids.push(order.into_inner().order.unwrap().order_id);
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let deadline = Duration::from_secs(20);

    publish(&app, "confirmed", "v-a", confirmed(a)).await;
    publish(&app, "rejected", "v-b", rejected(b, "card declined")).await;
    eventually("a confirmed, b rejected", deadline, || async {
        status_of(&app, a).await.0 == OrderStatus::Confirmed
            && status_of(&app, b).await == (OrderStatus::Rejected, "card declined".to_owned())
    })
    .await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(&app, "confirmed", "v-a", confirmed(a)).await;
    publish(&app, "rejected", "v-a-late", rejected(a, "too late")).await;
    publish(
        &app,
        "confirmed",
        "v-bad",
        b"\xff\xff not protobuf".to_vec(),
    )
    .await;
    // Behind the duplicate on the same consumer: once c moves, it was handled.
    publish(&app, "confirmed", "v-c", confirmed(c)).await;
    eventually(
        "c confirmed and every message recorded",
        deadline,
        || async {
            status_of(&app, c).await.0 == OrderStatus::Confirmed
                && inbox_outcome(&app, "v-a-late").await.is_some()
                && inbox_outcome(&app, "v-bad").await.is_some()
        },
    )
    .await;

    let republished = app
        .stream
        .messages(&app.nats_url)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.message_id == "v-a")
        .count();
    assert_eq!(
        republished, 2,
        "the re-publish should have reached the stream"
    );
    assert_eq!(app.count("inbox WHERE message_id = 'v-a'").await, 1);
    assert_eq!(
        inbox_outcome(&app, "v-a").await.unwrap(),
        "applied: confirmed"
    );
    assert!(
        inbox_outcome(&app, "v-a-late")
            .await
            .unwrap()
            .starts_with("ignored: order is confirmed")
    );
    assert!(
        inbox_outcome(&app, "v-bad")
            .await
            .unwrap()
            .starts_with("ignored: undecodable")
    );
    assert_eq!(
        status_of(&app, a).await,
        (OrderStatus::Confirmed, String::new())
    );
    assert_eq!(app.count("inbox").await, 5);
    app.stop().await.unwrap();
}

/// Twenty copies of one verdict applied at the same moment (as after a
/// redelivery racing the original on two replicas): one moves the order,
/// the others are duplicates; a different verdict for the same order after
/// it moved is recorded and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_verdict_applied_at_once_have_one_effect() {
    copies_of_a_verdict_have_one_effect(ordo_service_kit::group_commit::GroupCommitConfig::OFF)
        .await;
}

/// The same with batched settlement: copies in one transaction are still
/// one effect, each answered on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_verdict_settled_in_shared_transactions_have_one_effect() {
    copies_of_a_verdict_have_one_effect(
        ordo_service_kit::group_commit::GroupCommitConfig::batching(64, 2),
    )
    .await;
}

async fn copies_of_a_verdict_have_one_effect(
    settlement: ordo_service_kit::group_commit::GroupCommitConfig,
) {
    use order_service::domain::OrderId;
    use order_service::status::{StatusChange, StatusEvent};
    use order_service::store::{OrderStore, StatusOutcome};

    let app = TestApp::spawn().await;
    let store = OrderStore::new(
        app.db.clone(),
        ordo_outbox::PartitionCount::new(4).unwrap(),
        None,
    )
    .with_status_settlement(settlement);
    let order_id = app
        .client
        .clone()
        .place_order(valid_request())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .order_id;
    let event = || {
        Ok(StatusEvent {
            order_id: OrderId::parse(&order_id).unwrap(),
            change: StatusChange::Confirmed {
                payment_id: "pay-race".into(),
            },
        })
    };
    let outcomes = futures::future::join_all((0..20).map(|_| {
        store.order_status_apply(
            "race",
            "v-race",
            "orders.confirmed",
            Default::default(),
            event(),
        )
    }))
    .await;
    let applied = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(StatusOutcome::Applied(_))))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(StatusOutcome::Duplicate)))
        .count();
    assert_eq!((applied, duplicates), (1, 19), "{outcomes:?}");
    assert_eq!(status_of(&app, &order_id).await.0, OrderStatus::Confirmed);

    let late = store
        .order_status_apply(
            "race",
            "v-late",
            "orders.rejected",
            Default::default(),
            Ok(StatusEvent {
                order_id: OrderId::parse(&order_id).unwrap(),
                change: StatusChange::Rejected {
                    reason: "too late".into(),
                },
            }),
        )
        .await
        .unwrap();
    assert!(matches!(late, StatusOutcome::Ignored(_)), "{late:?}");
    assert_eq!(status_of(&app, &order_id).await.0, OrderStatus::Confirmed);
    let inbox = ordo_testkit::database::scalar(
        &app.db,
        "SELECT count(*) FROM inbox WHERE consumer = 'race'",
    )
    .await
    .unwrap();
    assert_eq!(inbox, 2);
}

/// Verdicts that arrive together are written together — many orders in
/// one statement — and each is still decided as if alone: two different
/// verdicts on one order move it once (the other is ignored), a verdict on
/// a cancelled or unknown order is ignored, copies of every message are
/// duplicates, and every message has exactly one inbox row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_written_together_are_each_decided_as_if_alone() {
    use order_service::domain::OrderId;
    use order_service::status::{StatusChange, StatusEvent};
    use order_service::store::{OrderStore, StatusOutcome};
    use ordo_proto::order::v1::CancelOrderRequest;

    let app = TestApp::spawn().await;
    let store = OrderStore::new(
        app.db.clone(),
        ordo_outbox::PartitionCount::new(4).unwrap(),
        None,
    )
    .with_status_settlement(ordo_service_kit::group_commit::GroupCommitConfig::batching(
        64, 1,
    ));
    let mut orders = Vec::new();
    for _ in 0..31 {
        let order = app
            .client
            .clone()
            .place_order(valid_request())
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        orders.push(order.order_id);
    }
    let cancelled = orders.pop().unwrap();
    app.client
        .clone()
        .cancel_order(CancelOrderRequest {
            order_id: cancelled.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let unknown = uuid::Uuid::now_v7().to_string();
    // The last eight orders hear two different verdicts, the second at
    // the end of the batch.
    let torn = orders[22..].to_vec();

    let confirmed = |order_id: &str| StatusEvent {
        order_id: OrderId::parse(order_id).unwrap(),
        change: StatusChange::Confirmed {
            payment_id: format!("pay-{order_id}"),
        },
    };
    let rejected = |order_id: &str| StatusEvent {
        order_id: OrderId::parse(order_id).unwrap(),
        change: StatusChange::Rejected {
            reason: "declined".into(),
        },
    };
    // (message id, subject, event)
    let mut messages: Vec<(String, &str, StatusEvent)> = orders
        .iter()
        .map(|order_id| {
            (
                format!("c-{order_id}"),
                "orders.confirmed",
                confirmed(order_id),
            )
        })
        .collect();
    messages.insert(
        5,
        (
            format!("c-{cancelled}"),
            "orders.confirmed",
            confirmed(&cancelled),
        ),
    );
    messages.insert(
        9,
        (
            format!("c-{unknown}"),
            "orders.confirmed",
            confirmed(&unknown),
        ),
    );
    messages.extend(torn.iter().map(|order_id| {
        (
            format!("r-{order_id}"),
            "orders.rejected",
            rejected(order_id),
        )
    }));
    let apply_all = || {
        futures::future::join_all(messages.iter().map(|(id, subject, event)| {
            store.order_status_apply(
                "together",
                id,
                subject,
                Default::default(),
                Ok(event.clone()),
            )
        }))
    };
    let outcomes: Vec<StatusOutcome> = apply_all().await.into_iter().map(Result::unwrap).collect();
    let outcome_of = |message_id: &str| -> &StatusOutcome {
        let at = messages
            .iter()
            .position(|(id, _, _)| id == message_id)
            .unwrap();
        &outcomes[at]
    };

    for order_id in &orders[..22] {
        assert_eq!(
            outcome_of(&format!("c-{order_id}")),
            &StatusOutcome::Applied("confirmed".into())
        );
        assert_eq!(status_of(&app, order_id).await.0, OrderStatus::Confirmed);
    }
    // Each torn order moved once, by whichever verdict came first; the
    // other was decided after it and ignored.
    for order_id in &torn {
        let both = [
            outcome_of(&format!("c-{order_id}")),
            outcome_of(&format!("r-{order_id}")),
        ];
        let status = status_of(&app, order_id).await.0;
        match both {
            [StatusOutcome::Applied(_), StatusOutcome::Ignored(_)] => {
                assert_eq!(status, OrderStatus::Confirmed)
            }
            [StatusOutcome::Ignored(_), StatusOutcome::Applied(_)] => {
                assert_eq!(status, OrderStatus::Rejected)
            }
            other => panic!("order {order_id}: {other:?}"),
        }
    }
    assert!(matches!(
        outcome_of(&format!("c-{cancelled}")),
        StatusOutcome::Ignored(_)
    ));
    assert_eq!(status_of(&app, &cancelled).await.0, OrderStatus::Cancelled);
    assert!(matches!(
        outcome_of(&format!("c-{unknown}")),
        StatusOutcome::Ignored(_)
    ));

    // Every message again, together: each a duplicate, nothing moves.
    let again = apply_all().await;
    assert!(
        again
            .iter()
            .all(|outcome| matches!(outcome, Ok(StatusOutcome::Duplicate))),
        "{again:?}"
    );
    for order_id in &torn {
        let first = match outcome_of(&format!("c-{order_id}")) {
            StatusOutcome::Applied(_) => OrderStatus::Confirmed,
            _ => OrderStatus::Rejected,
        };
        assert_eq!(status_of(&app, order_id).await.0, first);
    }

    // One inbox row per message, and the verdicts were written together
    // (fewer transactions than verdicts).
    let inbox = ordo_testkit::database::scalar(
        &app.db,
        "SELECT count(*) FROM inbox WHERE consumer = 'together'",
    )
    .await
    .unwrap();
    assert_eq!(inbox as usize, messages.len());
    let (transactions, verdicts) = crate::helpers::written_together(&store, "status");
    assert!(
        transactions < verdicts,
        "{transactions} transactions for {verdicts} verdicts"
    );
}

/// Verdicts written together are index probes of the orders however the
/// table grew since the connection planned their statement: PostgreSQL
/// keeps a prepared statement's generic plan, made while a table was
/// small, until it analyzes the table again — a join planned as a scan of
/// every order would read them all for each batch.
#[tokio::test]
async fn verdicts_written_together_stay_index_probes_as_the_orders_grow() {
    use order_service::domain::OrderId;
    use order_service::status::{StatusChange, StatusEvent};
    use order_service::store::{OrderStore, StatusOutcome};

    let database = TestDatabase::create().await.unwrap();
    let db = crate::helpers::one_connection(&database).await;
    let store = OrderStore::new(
        db.clone(),
        ordo_outbox::PartitionCount::new(4).unwrap(),
        None,
    )
    .with_status_settlement(ordo_service_kit::group_commit::GroupCommitConfig::batching(
        64, 1,
    ));
    let insert_orders = |rows: u32| {
        let db = db.clone();
        async move { crate::helpers::orders_inserted(&db, rows).await }
    };
    let batch = |round: usize, orders: Vec<uuid::Uuid>| {
        let store = store.clone();
        async move {
            let verdicts = orders.into_iter().map(|order_id| {
                let store = store.clone();
                async move {
                    store
                        .order_status_apply(
                            "grow",
                            &format!("v-{round}-{order_id}"),
                            "orders.confirmed",
                            Default::default(),
                            Ok(StatusEvent {
                                order_id: OrderId::from_uuid(order_id),
                                change: StatusChange::Confirmed {
                                    payment_id: "p".into(),
                                },
                            }),
                        )
                        .await
                }
            });
            for outcome in futures::future::join_all(verdicts).await {
                assert_eq!(outcome.unwrap(), StatusOutcome::Applied("confirmed".into()));
            }
        }
    };
    // A small table while the statements are prepared and planned.
    insert_orders(300).await;
    let mut verdicts = 0;
    for round in 0..20 {
        let orders = insert_orders(8).await;
        verdicts += orders.len();
        batch(round, orders).await;
    }
    insert_orders(30_000).await;
    for round in 20..30 {
        let orders = insert_orders(8).await;
        verdicts += orders.len();
        batch(round, orders).await;
    }
    let (transactions, written) = crate::helpers::written_together(&store, "status");
    assert!(transactions < written, "the verdicts were written together");
    let read = ordo_testkit::database::tuples_read_after_closing(db, database.url(), &["orders"])
        .await
        .unwrap();
    assert!(
        read <= 4 * verdicts as i64,
        "{verdicts} verdicts read {read} tuples of the orders"
    );
}
