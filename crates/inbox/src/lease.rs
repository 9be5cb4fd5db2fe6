//! Leases on background jobs (`job_leases`): one replica at a time runs a
//! job; a dead replica's lease expires and another takes over.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// Takes or renews the lease on `job` for `owner` for `ttl`. `Ok(true)`
/// when `owner` holds it afterwards.
pub async fn job_lease_acquire(
    db: &impl ConnectionTrait,
    job: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, DbErr> {
    let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO job_leases AS lease (name, owner, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
             WHERE lease.owner = EXCLUDED.owner OR lease.owner IS NULL OR lease.expires_at < now() \
             RETURNING owner",
            [job.into(), owner.into(), millis.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Gives the lease on `job` up, if `owner` holds it.
pub async fn job_lease_release(
    db: &impl ConnectionTrait,
    job: &str,
    owner: &str,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE job_leases SET owner = NULL, expires_at = '-infinity' WHERE name = $1 AND owner = $2",
        [job.into(), owner.into()],
    ))
    .await?;
    Ok(())
}
