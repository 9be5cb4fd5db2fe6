//! The inbox against a real PostgreSQL database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ordo_inbox::lease::job_lease_acquire;
use ordo_inbox::{InboxRetention, RetentionConfig, Sweep, inbox_contains, inbox_record_in_txn};
use ordo_testkit::{Schema, TestDatabase};
use sea_orm::{ConnectionTrait, TransactionTrait};

#[tokio::test]
async fn a_message_is_recorded_once() {
    let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
    let db = database.connect().await.unwrap();
    let txn = db.begin().await.unwrap();
    assert!(
        inbox_record_in_txn(
            &txn,
            "c",
            "m1",
            "orders.placed",
            "applied",
            &Default::default()
        )
        .await
        .unwrap()
    );
    txn.commit().await.unwrap();
    let txn = db.begin().await.unwrap();
    assert!(
        !inbox_record_in_txn(
            &txn,
            "c",
            "m1",
            "orders.placed",
            "again",
            &Default::default()
        )
        .await
        .unwrap()
    );
    // Another consumer handles the same message on its own account.
    assert!(
        inbox_record_in_txn(
            &txn,
            "other",
            "m1",
            "orders.placed",
            "applied",
            &Default::default()
        )
        .await
        .unwrap()
    );
    txn.rollback().await.unwrap();
    assert!(inbox_contains(&db, "c", "m1").await.unwrap());
    assert!(!inbox_contains(&db, "other", "m1").await.unwrap());
}

fn retention(db: sea_orm::DatabaseConnection, owner: &str) -> InboxRetention {
    InboxRetention::new(
        db,
        RetentionConfig {
            horizon: Duration::from_secs(7 * 24 * 3600),
            batch_size: 100,
            interval: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(30),
            owner: owner.to_owned(),
        },
    )
}

#[tokio::test]
async fn retention_deletes_only_old_rows_in_batches_by_one_replica() {
    let database = TestDatabase::create().await.unwrap();
    let db = database.connect().await.unwrap();
    db.execute_unprepared(
        "INSERT INTO inbox (consumer, message_id, subject, outcome, received_at) \
         SELECT 'c', 'old-' || n, 'orders.confirmed', 'applied', now() - interval '8 days' \
         FROM generate_series(1, 1050) AS n; \
         INSERT INTO inbox (consumer, message_id, subject, outcome, received_at) \
         SELECT 'c', 'new-' || n, 'orders.confirmed', 'applied', now() - interval '6 days' \
         FROM generate_series(1, 20) AS n",
    )
    .await
    .unwrap();

    let first = retention(db.clone(), "replica-a");
    let second = retention(db.clone(), "replica-b");
    assert!(
        job_lease_acquire(&db, "inbox-retention", "replica-a", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(second.activate().await.unwrap(), Sweep::NotLeader);
    assert_eq!(first.activate().await.unwrap(), Sweep::Deleted(1050));
    let left = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE message_id LIKE 'old-%') AS old, count(*) AS total FROM inbox",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.try_get::<i64>("", "old").unwrap(), 0);
    assert_eq!(left.try_get::<i64>("", "total").unwrap(), 20);
    // Nothing left to do: a sweep is idempotent.
    assert_eq!(first.activate().await.unwrap(), Sweep::Deleted(0));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let database = TestDatabase::create().await.unwrap();
    let db = database.connect().await.unwrap();
    // Lifetimes that must not run out during the test are long: a loaded
    // machine may take far longer between two statements than expected.
    assert!(
        job_lease_acquire(&db, "j", "a", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        !job_lease_acquire(&db, "j", "b", Duration::from_secs(30))
            .await
            .unwrap()
    );
    // The holder renews, this time with a lifetime that is sure to be over
    // after the sleep below.
    assert!(
        job_lease_acquire(&db, "j", "a", Duration::from_millis(1))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        job_lease_acquire(&db, "j", "b", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        !job_lease_acquire(&db, "j", "a", Duration::from_secs(30))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_messages_about_an_order_come_back_oldest_first_with_where_they_came_from() {
    use ordo_inbox::{Delivery, inbox_received_for_order};
    let database = TestDatabase::create().await.unwrap();
    let db = database.connect().await.unwrap();
    let order_id = uuid::Uuid::now_v7();
    let published_at = chrono::DateTime::from_timestamp(1_800_000_000, 5_000).unwrap();
    let txn = db.begin().await.unwrap();
    for (message_id, sequence) in [("m1", 7), ("m2", 9)] {
        let delivery = Delivery {
            order_id: Some(order_id),
            stream_sequence: sequence,
            published_at: Some(published_at),
        };
        assert!(
            inbox_record_in_txn(
                &txn,
                "c",
                message_id,
                "orders.placed",
                "applied: x",
                &delivery
            )
            .await
            .unwrap()
        );
    }
    // About another order, and about none (undecodable): not returned.
    let other = Delivery {
        order_id: Some(uuid::Uuid::now_v7()),
        ..Default::default()
    };
    inbox_record_in_txn(&txn, "c", "m3", "orders.placed", "", &other)
        .await
        .unwrap();
    inbox_record_in_txn(&txn, "c", "m4", "orders.placed", "", &Delivery::default())
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let received = inbox_received_for_order(&db, order_id, 10).await.unwrap();
    let ids: Vec<&str> = received.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(received[0].stream_sequence, Some(7));
    assert_eq!(received[1].stream_sequence, Some(9));
    assert_eq!(received[0].published_at, Some(published_at));
    assert_eq!(received[0].outcome, "applied: x");
    assert_eq!(
        inbox_received_for_order(&db, order_id, 1)
            .await
            .unwrap()
            .len(),
        1,
        "bounded"
    );
}
