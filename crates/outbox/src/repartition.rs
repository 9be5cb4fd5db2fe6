//! The partition count is part of the outbox's data: every row sits in
//! `fnv1a(aggregate_id) mod P`. Change P under rows already written and
//! they are stranded (in partitions no relay reads any more) or one
//! aggregate's events end up in two partitions, published out of order.
//!
//! So the count is recorded (`outbox_settings`) by the first process that
//! starts on a database, and every later one must agree:
//! [`outbox_partitions_record`] refuses a process started with another
//! `OUTBOX_PARTITIONS`, and a running relay stops renewing its leases (so
//! its actors stop) if the record changes under it. The one way to change
//! it is [`outbox_repartition`] (`ordo-migrate repartition N`): with every
//! replica stopped, it moves each waiting row to its partition under the
//! new count — rows keep their ids, so each aggregate's order holds — and
//! records the new count, in one transaction holding the outbox's tables.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
};

use crate::PartitionCount;

/// Why a process may not use the outbox with its partition count.
#[derive(Debug, thiserror::Error)]
pub enum PartitionsError {
    #[error(
        "OUTBOX_PARTITIONS is {configured}, but this database's outbox is written with {recorded} \
         partitions: start with OUTBOX_PARTITIONS={recorded}, or change the count for every \
         replica with `ordo-migrate repartition {configured}` while none runs (docs/operations.md)"
    )]
    Mismatch { configured: u32, recorded: u32 },
    #[error(
        "{members} relay replica(s) are running on this outbox: stop every replica before \
         repartitioning (their rows would go on landing in the old partitions)"
    )]
    ReplicasRunning { members: i64 },
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// What a repartition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repartitioned {
    pub from: Option<u32>,
    pub to: u32,
    /// Waiting rows (and parked ones) that changed partition.
    pub moved: u64,
}

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The recorded partition count, if any.
pub async fn outbox_partitions_recorded<C: ConnectionTrait>(db: &C) -> Result<Option<u32>, DbErr> {
    let row = db
        .query_one_raw(statement(
            "SELECT partitions FROM outbox_settings WHERE singleton",
            [],
        ))
        .await?;
    row.map(|row| row.try_get::<i32>("", "partitions"))
        .transpose()
        .map(|count| count.map(|count| u32::try_from(count).unwrap_or_default()))
}

/// Records `partitions` if no count is recorded yet; refuses a count that
/// differs from the recorded one.
pub async fn outbox_partitions_record(
    db: &DatabaseConnection,
    partitions: PartitionCount,
) -> Result<(), PartitionsError> {
    db.execute_raw(statement(
        "INSERT INTO outbox_settings (partitions) VALUES ($1) ON CONFLICT (singleton) DO NOTHING",
        [i64::from(partitions.get()).into()],
    ))
    .await?;
    match outbox_partitions_recorded(db).await? {
        Some(recorded) if recorded != partitions.get() => Err(PartitionsError::Mismatch {
            configured: partitions.get(),
            recorded,
        }),
        _ => Ok(()),
    }
}

/// Moves every waiting and parked row to its partition under `to` and
/// records `to`, refusing while any relay replica is alive.
pub async fn outbox_repartition(
    db: &DatabaseConnection,
    to: PartitionCount,
) -> Result<Repartitioned, PartitionsError> {
    let txn = db.begin().await?;
    txn.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('ordo.outbox.repartition'))")
        .await?;
    // Writers and relays wait on these until the new count is in place.
    txn.execute_unprepared(
        "LOCK TABLE outbox, outbox_parked, outbox_settings, outbox_leases IN ACCESS EXCLUSIVE MODE",
    )
    .await?;
    let members: i64 = txn
        .query_one_raw(statement(
            "SELECT (SELECT count(*) FROM outbox_relay_members WHERE expires_at > now()) \
                  + (SELECT count(*) FROM outbox_leases WHERE owner IS NOT NULL AND expires_at > now()) AS n",
            [],
        ))
        .await?
        .map_or(Ok(0), |row| row.try_get("", "n"))?;
    if members > 0 {
        return Err(PartitionsError::ReplicasRunning { members });
    }
    let from = outbox_partitions_recorded(&txn).await?;
    let mut moved = 0;
    for table in ["outbox", "outbox_parked"] {
        let rows = txn
            .query_all_raw(statement(
                &format!("SELECT id, partition, aggregate_id FROM {table}"),
                [],
            ))
            .await?;
        let mut ids = Vec::new();
        let mut partitions = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let partition: i32 = row.try_get("", "partition")?;
            let aggregate_id: String = row.try_get("", "aggregate_id")?;
            let target = to.partition_of(&aggregate_id);
            if target != partition {
                ids.push(id);
                partitions.push(target);
            }
        }
        for (ids, partitions) in ids.chunks(5_000).zip(partitions.chunks(5_000)) {
            moved += txn
                .execute_raw(statement(
                    &format!(
                        "UPDATE {table} SET partition = moved.partition \
                         FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::integer[]) AS partition) AS moved \
                         WHERE {table}.id = moved.id"
                    ),
                    [Value::from(ids.to_vec()), Value::from(partitions.to_vec())],
                ))
                .await?
                .rows_affected();
        }
    }
    txn.execute_raw(statement(
        "INSERT INTO outbox_settings (partitions) VALUES ($1) \
         ON CONFLICT (singleton) DO UPDATE SET partitions = EXCLUDED.partitions, recorded_at = now()",
        [i64::from(to.get()).into()],
    ))
    .await?;
    // Relays create the lease rows of the new count when they start.
    txn.execute_unprepared("DELETE FROM outbox_leases").await?;
    txn.commit().await?;
    Ok(Repartitioned {
        from,
        to: to.get(),
        moved,
    })
}
