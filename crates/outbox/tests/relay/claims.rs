//! The claim query walks the (partition, id) index on a large outbox, with
//! the plan settings the relay's own connections use. The claimed
//! partition's rows sit at the very end of the table, where a plan walking
//! ids and filtering partitions would read everything before them.

use ordo_outbox::claims::{CLAIM_SQL, relay_pool};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::helpers::Harness;

async fn claim_plan(pool: &DatabaseConnection, partition: i32) -> String {
    let explain = format!("EXPLAIN {CLAIM_SQL}");
    let plan: Vec<String> = pool
        .query_all_raw(Statement::from_sql_and_values(
            pool.get_database_backend(),
            &explain,
            [partition.into(), "me".into(), 256_i64.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect();
    plan.join("\n")
}

/// The claim walks the key in order: no scan of the table, no bitmap (which
/// never marks dead index entries), no sort.
fn assert_ordered_walk(plan: &str) {
    assert!(plan.contains("Index Scan using outbox_pkey"), "{plan}");
    assert!(plan.contains("Index Cond: (partition = "), "{plan}");
    assert!(!plan.contains("Seq Scan on outbox"), "{plan}");
    assert!(!plan.contains("Bitmap"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

#[tokio::test]
async fn the_claim_uses_its_index_on_a_large_table() {
    let harness = Harness::new().await;
    harness
        .db
        .execute_unprepared(
            "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload) \
             SELECT gen_random_uuid(), CASE WHEN n > 199000 THEN 3 ELSE n % 3 END, \
                    'order', n::text, 'orders.placed', 't', '\\x00' \
             FROM generate_series(1, 200000) AS n; \
             INSERT INTO outbox_leases (partition, owner, expires_at) VALUES (3, 'me', now() + interval '1 hour'); \
             ANALYZE outbox;",
        )
        .await
        .unwrap();
    let pool = relay_pool(harness.database.url(), 1).await.unwrap();
    for setting in ["enable_seqscan", "enable_bitmapscan"] {
        let row = pool
            .query_one_raw(Statement::from_string(
                pool.get_database_backend(),
                format!("SHOW {setting}"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", setting).unwrap(), "off");
    }
    assert_ordered_walk(&claim_plan(&pool, 3).await);

    let claimed = ordo_outbox::claims::outbox_claim_batch(&pool, 3, "me", 256, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 256);
    assert!(claimed.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert!(
        ordo_outbox::claims::outbox_claim_batch(&pool, 3, "someone-else", 256, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A queue table between vacuums: never analyzed, a few live rows behind
/// thousands of deleted ones — where PostgreSQL, left to itself, picks a
/// bitmap scan and a sort that revisit every dead row on every claim.
#[tokio::test]
async fn the_claim_walks_its_index_on_a_fresh_churned_table() {
    let harness = Harness::new().await;
    harness
        .db
        .execute_unprepared(
            "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload) \
             SELECT gen_random_uuid(), n % 16, 'order', n::text, 'orders.placed', 't', '\\x00' \
             FROM generate_series(1, 5000) AS n; \
             DELETE FROM outbox WHERE id % 500 <> 0; \
             INSERT INTO outbox_leases (partition, owner, expires_at) VALUES (5, 'me', now() + interval '1 hour');",
        )
        .await
        .unwrap();
    let pool = relay_pool(harness.database.url(), 1).await.unwrap();
    assert_ordered_walk(&claim_plan(&pool, 5).await);
    let claimed = ordo_outbox::claims::outbox_claim_batch(&pool, 5, "me", 256, &[])
        .await
        .unwrap();
    assert!(claimed.iter().all(|row| row.partition == 5));
    assert!(claimed.windows(2).all(|pair| pair[0].id < pair[1].id));
}

/// Under load a round's delete rides on the next claim: the rows acked
/// before are deleted and skipped, and the claim still walks its index.
#[tokio::test]
async fn a_claim_deletes_the_rows_acked_before_and_claims_the_next_ones() {
    let harness = Harness::new().await;
    harness
        .db
        .execute_unprepared(
            "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload) \
             SELECT gen_random_uuid(), 5, 'order', n::text, 'orders.placed', 't', '\\x00' \
             FROM generate_series(1, 10) AS n; \
             INSERT INTO outbox_leases (partition, owner, expires_at) VALUES (5, 'me', now() + interval '1 hour');",
        )
        .await
        .unwrap();
    let pool = relay_pool(harness.database.url(), 1).await.unwrap();
    let ids =
        |rows: &[ordo_outbox::entity::Model]| rows.iter().map(|row| row.id).collect::<Vec<_>>();
    let first = ordo_outbox::claims::outbox_claim_batch(&pool, 5, "me", 4, &[])
        .await
        .unwrap();
    let first = ids(&first);
    // The first two were acked; the other two failed and are claimed again.
    let second = ordo_outbox::claims::outbox_claim_batch(&pool, 5, "me", 4, &first[..2])
        .await
        .unwrap();
    let second = ids(&second);
    assert_eq!(second[..2], first[2..]);
    assert_eq!(second.len(), 4);
    let left: i64 = pool
        .query_one_raw(Statement::from_string(
            pool.get_database_backend(),
            "SELECT count(*) AS n FROM outbox",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(left, 8, "the two acked rows are gone");
    // A replica without the lease deletes rows it published, claims nothing.
    let none = ordo_outbox::claims::outbox_claim_batch(&pool, 5, "someone-else", 4, &second[..1])
        .await
        .unwrap();
    assert!(none.is_empty());
}
