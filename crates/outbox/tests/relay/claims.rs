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

async fn outbox_rows(pool: &DatabaseConnection) -> i64 {
    pool.query_one_raw(Statement::from_string(
        pool.get_database_backend(),
        "SELECT count(*) AS n FROM outbox",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap()
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
    partitions_with_rows(&harness, &[5], &[5]).await;
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
    let left = outbox_rows(&pool).await;
    assert_eq!(left, 8, "the two acked rows are gone");
    // A replica without the lease deletes rows it published, claims nothing.
    let none = ordo_outbox::claims::outbox_claim_batch(&pool, 5, "someone-else", 4, &second[..1])
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Rows of `partitions` (ten each, aggregate = the row's number) and
/// leases: `mine` to "me", the others to someone else.
async fn partitions_with_rows(harness: &Harness, partitions: &[i32], mine: &[i32]) {
    for &partition in partitions {
        let owner = if mine.contains(&partition) {
            "me"
        } else {
            "someone-else"
        };
        harness
            .db
            .execute_unprepared(&format!(
                "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload) \
                 SELECT gen_random_uuid(), {partition}, 'order', '{partition}-' || n, 'orders.placed', 't', '\\x00' \
                 FROM generate_series(1, 10) AS n; \
                 INSERT INTO outbox_leases (partition, owner, expires_at) VALUES ({partition}, '{owner}', now() + interval '1 hour');"
            ))
            .await
            .unwrap();
    }
}

fn ids_of(rows: &[ordo_outbox::entity::Model]) -> Vec<i64> {
    rows.iter().map(|row| row.id).collect()
}

/// Claims of several partitions in one statement answer as each alone
/// would: its own rows in id order, its batch size, its lease, the rows
/// acked before deleted and skipped, a parked aggregate's rows left.
#[tokio::test]
async fn claims_of_several_partitions_in_one_statement_answer_as_each_alone() {
    use ordo_outbox::claims::{ClaimJob, outbox_claim_batch, outbox_claim_partitions};
    let harness = Harness::new().await;
    partitions_with_rows(&harness, &[1, 2, 3, 4], &[1, 2, 4]).await;
    // Partition 4's aggregate "4-1" waits behind a parked row.
    harness
        .db
        .execute_unprepared(
            "INSERT INTO outbox_parked (id, event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, headers, created_at, reason) \
             VALUES (999999, gen_random_uuid(), 4, 'order', '4-1', 'orders.placed', 't', '\\x00', '{}', now(), 'test')",
        )
        .await
        .unwrap();
    let pool = relay_pool(harness.database.url(), 1).await.unwrap();
    let first = ids_of(&outbox_claim_batch(&pool, 1, "me", 3, &[]).await.unwrap());
    let second = ids_of(&outbox_claim_batch(&pool, 2, "me", 3, &[]).await.unwrap());
    let jobs = [
        ClaimJob {
            partition: 1,
            acked: first[..2].to_vec(),
        },
        ClaimJob {
            partition: 2,
            acked: second.clone(),
        },
        ClaimJob {
            partition: 3,
            acked: vec![],
        },
        ClaimJob {
            partition: 4,
            acked: vec![],
        },
    ];
    let statements = ordo_outbox::statements::statements_total();
    let claimed: Vec<Vec<i64>> = outbox_claim_partitions(&pool, "me", 3, &jobs)
        .await
        .into_iter()
        .map(|claimed| ids_of(&claimed.unwrap()))
        .collect();
    assert_eq!(ordo_outbox::statements::statements_total() - statements, 1);
    assert_eq!(
        claimed[0][0], first[2],
        "partition 1 goes on after its acked rows"
    );
    assert_eq!(claimed[0].len(), 3);
    assert!(claimed[1].iter().all(|id| !second.contains(id)));
    assert_eq!(claimed[1].len(), 3);
    assert!(
        claimed[2].is_empty(),
        "partition 3 is leased to another replica"
    );
    assert_eq!(claimed[3].len(), 3);
    for (job, ids) in jobs.iter().zip(&claimed) {
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        let alone = outbox_claim_batch(&pool, job.partition, "me", 3, &[])
            .await
            .unwrap();
        assert_eq!(&ids_of(&alone), ids, "partition {}", job.partition);
        assert!(alone.iter().all(|row| row.aggregate_id != "4-1"));
    }
    let left = outbox_rows(&pool).await;
    assert_eq!(left, 40 - 2 - 3, "the acked rows are gone");

    // Each partition walks its key; nothing reads the table or sorts it.
    let plan: Vec<String> = pool
        .query_all_raw(Statement::from_sql_and_values(
            pool.get_database_backend(),
            format!("EXPLAIN {}", ordo_outbox::claims::CLAIM_PARTITIONS_SQL),
            [
                sea_orm::Value::from(vec![1_i32, 2, 3, 4]),
                "me".into(),
                3_i64.into(),
                sea_orm::Value::from(vec![1_i64, 2]),
            ],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using outbox_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan on outbox"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

/// Claims that come at once share a statement; a claim that finds the
/// writer idle is made at once; each actor gets only its partition's rows.
#[tokio::test]
async fn claims_that_come_together_share_a_statement() {
    let harness = Harness::new().await;
    let partitions: Vec<i32> = (0..16).collect();
    partitions_with_rows(&harness, &partitions, &partitions).await;
    let pool = relay_pool(harness.database.url(), 2).await.unwrap();
    let metrics = std::sync::Arc::new(ordo_outbox::RelayMetrics::new(16));
    let group = ordo_outbox::claim_group::ClaimGroup::start(
        pool,
        "me".into(),
        256,
        16,
        std::sync::Arc::clone(&metrics),
    );
    let claimed = futures::future::join_all(partitions.iter().map(|&partition| {
        let group = group.clone();
        async move { (partition, group.claim(partition, &[], false).await.unwrap()) }
    }))
    .await;
    for (partition, rows) in &claimed {
        assert_eq!(rows.len(), 10, "partition {partition}");
        assert!(rows.iter().all(|row| row.partition == *partition));
    }
    let statements = metrics
        .claim_statements
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=3).contains(&statements),
        "16 claims at once took {statements} statements"
    );
    // One alone, with the writer idle, is one statement of its own.
    let rows = group.claim(3, &ids_of(&claimed[3].1), false).await.unwrap();
    assert!(rows.is_empty());
    assert_eq!(
        metrics
            .claim_statements
            .load(std::sync::atomic::Ordering::Relaxed),
        statements + 1
    );
    // Partitions with a backlog claim alone, each its own statement, even
    // when they come at once.
    let before = metrics
        .claim_statements
        .load(std::sync::atomic::Ordering::Relaxed);
    futures::future::join_all([4, 5, 6].map(|partition| {
        let group = group.clone();
        async move { group.claim(partition, &[], true).await.unwrap() }
    }))
    .await;
    assert_eq!(
        metrics
            .claim_statements
            .load(std::sync::atomic::Ordering::Relaxed),
        before + 3
    );
}
