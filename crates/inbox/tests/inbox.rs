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

mod settlement {
    //! Batched settlement against a real PostgreSQL: statements that
    //! arrive while a commit is in flight share the next transaction, and
    //! each still has its own result.

    use std::time::Duration;

    use ordo_inbox::settle::{Settlement, Write};
    use ordo_service_kit::group_commit::GroupCommitConfig;
    use ordo_testkit::{Schema, TestDatabase};
    use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

    const ONE_WRITER: GroupCommitConfig = GroupCommitConfig::batching(64, 1);

    async fn scratch() -> (TestDatabase, DatabaseConnection) {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let db = database.connect().await.unwrap();
        db.execute_unprepared(
            "CREATE TABLE settled (id int PRIMARY KEY, note text NOT NULL);
             CREATE TABLE settled_late (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);",
        )
        .await
        .unwrap();
        (database, db)
    }

    fn insert(id: i32, note: &str) -> Write {
        Write::RowsAffected(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO settled (id, note) VALUES ($1, $2)",
            [id.into(), note.into()],
        ))
    }

    /// Holds the only writer for 300 ms, then inserts `id`.
    fn slow_insert(id: i32) -> Write {
        Write::RowsAffected(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO settled (id, note) SELECT $1, 'slow' FROM pg_sleep(0.3)",
            [id.into()],
        ))
    }

    async fn ids(db: &DatabaseConnection, table: &str) -> Vec<i32> {
        db.query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT id FROM {table} ORDER BY id"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<i32>(0).unwrap())
        .collect()
    }

    /// Runs `writes` at once behind a slow write holding the writer.
    async fn behind_a_slow_write(
        settlement: &Settlement,
        writes: Vec<Write>,
    ) -> Vec<Result<u64, sea_orm::DbErr>> {
        let slow = {
            let settlement = settlement.clone();
            tokio::spawn(async move { settlement.run(slow_insert(1000)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let results =
            futures::future::join_all(writes.into_iter().map(|write| settlement.run(write))).await;
        assert_eq!(slow.await.unwrap().unwrap(), 1);
        results
    }

    #[tokio::test]
    async fn writes_arriving_together_share_one_transaction_each_with_its_own_result() {
        let (_database, db) = scratch().await;
        let settlement = Settlement::new(db.clone(), ONE_WRITER);
        let mut writes: Vec<Write> = (1..=10).map(|id| insert(id, "batched")).collect();
        writes.push(Write::RowsAffected(Statement::from_string(
            DbBackend::Postgres,
            "UPDATE settled SET note = 'x' WHERE id = -1",
        )));
        writes.push(Write::Count(Statement::from_string(
            DbBackend::Postgres,
            "SELECT 7::bigint",
        )));
        let results: Vec<u64> = behind_a_slow_write(&settlement, writes)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(results, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 7]);
        assert_eq!(ids(&db, "settled").await.len(), 11);
        // The slow write alone, then the twelve behind it together.
        assert_eq!(settlement.counts().unwrap().get(), (2, 13));
    }

    #[tokio::test]
    async fn a_failing_statement_fails_alone_and_the_rest_of_its_batch_is_written() {
        let (_database, db) = scratch().await;
        db.execute_unprepared("INSERT INTO settled VALUES (5, 'before')")
            .await
            .unwrap();
        let settlement = Settlement::new(db.clone(), ONE_WRITER);
        let results = behind_a_slow_write(
            &settlement,
            (1..=8).map(|id| insert(id, "batched")).collect(),
        )
        .await;
        for (id, result) in (1..=8).zip(&results) {
            if id == 5 {
                let err = result.as_ref().unwrap_err();
                assert!(
                    matches!(
                        err.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ),
                    "{err}"
                );
            } else {
                assert_eq!(result.as_ref().unwrap(), &1, "write {id}");
            }
        }
        assert_eq!(ids(&db, "settled").await, [1, 2, 3, 4, 5, 6, 7, 8, 1000]);
    }

    #[tokio::test]
    async fn a_commit_that_fails_fails_every_write_of_the_batch_and_keeps_none() {
        let (_database, db) = scratch().await;
        let settlement = Settlement::new(db.clone(), ONE_WRITER);
        // Two rows with one deferred-unique value: only COMMIT finds out.
        let late = |id: i32| {
            Write::RowsAffected(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO settled_late (id) VALUES ($1)",
                [id.into()],
            ))
        };
        let results = behind_a_slow_write(
            &settlement,
            vec![insert(1, "a"), late(9), late(9), insert(2, "b")],
        )
        .await;
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert_eq!(ids(&db, "settled").await, [1000]);
        assert!(ids(&db, "settled_late").await.is_empty());
    }

    #[tokio::test]
    async fn batching_off_runs_each_write_alone() {
        let (_database, db) = scratch().await;
        let settlement = Settlement::new(db.clone(), GroupCommitConfig::OFF);
        let results =
            futures::future::join_all((1..=3).map(|id| settlement.run(insert(id, "alone")))).await;
        assert!(
            results
                .iter()
                .all(|result| result.as_ref().is_ok_and(|rows| *rows == 1))
        );
        assert!(settlement.counts().is_none());
    }
}
