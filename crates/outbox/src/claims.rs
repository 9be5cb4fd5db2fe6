//! The relay's queries on the `outbox` table: claim a partition's oldest
//! rows (fenced by the lease), delete what was acked (alone, or folded into
//! the next claim), measure the backlog.
//!
//! Hand-written SQL, because the plan matters: the claim must walk the
//! `(partition, id)` primary key even on a table of millions of rows (the
//! table has no index on `id` alone, which PostgreSQL would otherwise prefer
//! to walk while filtering out other partitions — see the migration).
//!
//! The relay's connections leave the planner one way to read the outbox:
//! an ordered walk of that key (`enable_seqscan` and `enable_bitmapscan`
//! off). A queue table is mostly dead rows between vacuums, and on a fresh
//! or small table PostgreSQL otherwise picks a bitmap scan and a sort — a
//! plan that never marks dead index entries, so every claim visited every
//! row deleted since the last vacuum (measured: claims of 2.3 ms on
//! average under load, against ~0.02 ms for the ordered walk, which marks
//! what it finds dead and skips it from then on). With no other plan left,
//! a generic plan is as good as a custom one, so statements are planned
//! once per connection, not per claim.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    Statement, Value,
};

use crate::entity;

/// The claim's SELECT of the partition `$partition` (an SQL expression),
/// with `$skip` (more conditions) after it: `$2` owner, `$3` batch size.
macro_rules! claim_select {
    ($partition:literal, $skip:literal) => {
        concat!(
            "SELECT id, event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, headers, created_at
FROM outbox
WHERE partition = ",
            $partition,
            $skip,
            "
  AND EXISTS (SELECT 1 FROM outbox_leases
              WHERE partition = ",
            $partition,
            " AND owner = $2 AND expires_at > now())
  AND NOT EXISTS (SELECT 1 FROM outbox_parked p
                  WHERE p.aggregate_type = outbox.aggregate_type AND p.aggregate_id = outbox.aggregate_id)
ORDER BY id
LIMIT $3"
        )
    };
}

/// The claim query: `$1` partition, `$2` owner, `$3` batch size. Rows of an
/// aggregate with a parked row wait behind it.
pub const CLAIM_SQL: &str = claim_select!("$1", "");

/// The claim query that first deletes the rows of the round before (`$4`,
/// their ids: acked, so deleting them needs no lease): one statement a
/// round. The claim skips them (it reads the table as it was before the
/// delete).
pub const DELETE_AND_CLAIM_SQL: &str = concat!(
    "WITH done AS (DELETE FROM outbox WHERE partition = $1 AND id = ANY($4))\n",
    claim_select!("$1", "\n  AND NOT (id = ANY($4))")
);

/// The claims of several partitions (`$1`, an array) in one statement,
/// each its own walk of the key (a `LATERAL` subquery per partition, with
/// the batch size each), after deleting the rows their rounds before acked
/// (`$4`: ids are unique across partitions).
pub const CLAIM_PARTITIONS_SQL: &str = concat!(
    "WITH done AS (DELETE FROM outbox WHERE partition = ANY($1) AND id = ANY($4))
SELECT c.* FROM unnest($1::int[]) AS r (partition)
CROSS JOIN LATERAL (",
    claim_select!("r.partition", "\n  AND NOT (id = ANY($4))"),
    ") AS c"
);

/// Up to `limit` rows of `partition` in id order, if `owner` still holds
/// its lease; none otherwise (a replica that lost its lease stops at once).
/// The rows `acked` before (published, not yet deleted) are deleted in the
/// same statement.
pub async fn outbox_claim_batch(
    db: &DatabaseConnection,
    partition: i32,
    owner: &str,
    limit: u32,
    acked: &[i64],
) -> Result<Vec<entity::Model>, DbErr> {
    let statement = if acked.is_empty() {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM_SQL,
            [partition.into(), owner.into(), i64::from(limit).into()],
        )
    } else {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            DELETE_AND_CLAIM_SQL,
            [
                partition.into(),
                owner.into(),
                i64::from(limit).into(),
                Value::from(acked.to_vec()),
            ],
        )
    };
    entity::Entity::find().from_raw_sql(statement).all(db).await
}

/// One partition's claim: its rows acked by the round before, to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimJob {
    pub partition: i32,
    pub acked: Vec<i64>,
}

/// The claims of `jobs` in one statement: each partition's rows in id
/// order, in `jobs`' order. If the statement fails (or a partition comes
/// twice: a round aborted and its successor), each claim is made alone (a
/// claim's delete is of rows already published: made twice, the second
/// deletes nothing).
pub async fn outbox_claim_partitions(
    db: &DatabaseConnection,
    owner: &str,
    limit: u32,
    jobs: &[ClaimJob],
) -> Vec<Result<Vec<entity::Model>, DbErr>> {
    let partitions: Vec<i32> = jobs.iter().map(|job| job.partition).collect();
    let distinct = partitions
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
        == partitions.len();
    if jobs.len() > 1 && distinct {
        let acked: Vec<i64> = jobs
            .iter()
            .flat_map(|job| job.acked.iter().copied())
            .collect();
        let claimed = entity::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                CLAIM_PARTITIONS_SQL,
                [
                    Value::from(partitions),
                    owner.into(),
                    i64::from(limit).into(),
                    Value::from(acked),
                ],
            ))
            .all(db)
            .await;
        match claimed {
            Ok(rows) => return rows_by_partition(jobs, rows).into_iter().map(Ok).collect(),
            Err(err) => {
                tracing::debug!(error = %err, "a claim of several partitions failed; claiming each alone")
            }
        }
    }
    let mut claims = Vec::with_capacity(jobs.len());
    for job in jobs {
        claims.push(outbox_claim_batch(db, job.partition, owner, limit, &job.acked).await);
    }
    claims
}

/// `rows` split by the partition of each of `jobs`, each in id order.
fn rows_by_partition(jobs: &[ClaimJob], rows: Vec<entity::Model>) -> Vec<Vec<entity::Model>> {
    let mut split: Vec<Vec<entity::Model>> = vec![Vec::new(); jobs.len()];
    for row in rows {
        if let Some(at) = jobs.iter().position(|job| job.partition == row.partition) {
            split[at].push(row);
        }
    }
    for rows in &mut split {
        rows.sort_unstable_by_key(|row| row.id);
    }
    split
}

/// Deletes exactly the rows of `partition` in `ids`, in one statement.
pub async fn outbox_delete(
    db: &DatabaseConnection,
    partition: i32,
    ids: Vec<i64>,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM outbox WHERE partition = $1 AND id = ANY($2)",
            [partition.into(), Value::from(ids)],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Moves row `id` of `partition` out of the outbox into `outbox_parked`,
/// with the reason it can never be published.
pub async fn outbox_park(
    db: &DatabaseConnection,
    partition: i32,
    id: i64,
    reason: &str,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "WITH moved AS (DELETE FROM outbox WHERE partition = $1 AND id = $2 RETURNING *) \
         INSERT INTO outbox_parked (id, event_id, partition, aggregate_type, aggregate_id, subject, \
           event_type, payload, headers, created_at, reason) \
         SELECT id, event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, \
           headers, created_at, $3 FROM moved",
        [partition.into(), id.into(), reason.into()],
    ))
    .await?;
    Ok(())
}

/// Rows parked in the outbox.
pub async fn outbox_parked_count(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM outbox_parked",
        ))
        .await?;
    row.map_or(Ok(0), |row| row.try_get("", "n"))
}

/// Rows waiting and the age of the oldest, per partition that has any.
pub async fn outbox_backlog(db: &DatabaseConnection) -> Result<Vec<(i32, i64, Duration)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT partition, count(*) AS rows, \
             (extract(epoch FROM now() - min(created_at)) * 1000)::bigint AS oldest_ms \
             FROM outbox GROUP BY partition",
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let partition: i32 = row.try_get("", "partition")?;
            let count: i64 = row.try_get("", "rows")?;
            let oldest_ms: i64 = row.try_get("", "oldest_ms")?;
            let age = Duration::from_millis(u64::try_from(oldest_ms).unwrap_or(0));
            Ok((partition, count, age))
        })
        .collect()
}

/// The pool the relay's rounds use. Settings on every connection:
/// - `enable_seqscan`, `enable_bitmapscan` off: claims and deletes walk the
///   `(partition, id)` key, whatever the table's statistics say (see above);
/// - `synchronous_commit = off`: a round's DELETE need not wait for its WAL
///   flush. If the database crashes and loses it, the rows come back and are
///   published again, and JetStream drops the duplicates (the same path as a
///   relay crash before its delete) — while every order transaction stops
///   competing with a flush per relay round.
///
/// Connections are not pinged before each use (sqlx's default costs a round
/// trip per claim and per delete): a round that meets a dead connection
/// fails and the next round retries on a fresh one.
pub async fn relay_pool(url: &str, connections: u32) -> Result<DatabaseConnection, DbErr> {
    pool(
        url,
        connections,
        false,
        &[
            ("enable_seqscan", "off"),
            ("enable_bitmapscan", "off"),
            ("synchronous_commit", "off"),
            ("statement_timeout", "10s"),
        ],
    )
    .await
}

/// The pool for leases and membership: durable commits, because a lease
/// renewal lost in a crash could let another replica take over early.
pub async fn lease_pool(url: &str) -> Result<DatabaseConnection, DbErr> {
    pool(url, 2, true, &[("statement_timeout", "5s")]).await
}

async fn pool(
    url: &str,
    connections: u32,
    ping_before_use: bool,
    settings: &'static [(&'static str, &'static str)],
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .test_before_acquire(ping_before_use)
        .max_connections(connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |options| options.options(settings.iter().copied()));
    let mut db = Database::connect(options).await?;
    crate::statements::count_statements_of(&mut db);
    Ok(db)
}
