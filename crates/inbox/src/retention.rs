//! Sweeping old rows away, so that no table only grows: the inbox here, and
//! any table a service names with a [`RetentionJob`] (error histories,
//! idempotency keys).
//!
//! [`Retention::activate`] is one idempotent sweep: take (or renew) the
//! job's lease; if held, delete rows older than the horizon in batches of
//! `batch_size`, each its own short transaction that skips rows another
//! transaction has locked, renewing the lease between batches; stop at a
//! batch smaller than the limit. [`Retention::run`] activates it on a
//! timer until told to stop; the next run is the retry of a failed one.
//! What a job may delete is its own statement's business: a job never
//! deletes a row something still needs (an error history of an order whose
//! payment is still open, say).

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio::sync::watch;

use crate::lease::{job_lease_acquire, job_lease_release};

/// A table swept by age: the lease's name in `job_leases`, and the DELETE
/// of at most `$2` rows older than `$1` milliseconds (skipping locked rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionJob {
    pub name: &'static str,
    /// Named in logs: what the rows are.
    pub rows: &'static str,
    pub delete_batch_sql: &'static str,
}

/// The inbox's sweep.
pub const INBOX_RETENTION: RetentionJob = RetentionJob {
    name: "inbox-retention",
    rows: "inbox rows",
    delete_batch_sql: "DELETE FROM inbox WHERE (consumer, message_id) IN ( \
       SELECT consumer, message_id FROM inbox \
       WHERE received_at < now() - $1 * interval '1 millisecond' \
       ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
};

/// How long rows are kept and how they are swept.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Rows older than this go. Keep it above the stream's duplicate window.
    pub horizon: Duration,
    /// Rows deleted per transaction.
    pub batch_size: u32,
    /// Time between sweeps.
    pub interval: Duration,
    /// Lifetime of the lease; renewed between batches.
    pub lease_ttl: Duration,
    /// This replica's name in the lease.
    pub owner: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(7 * 24 * 3600),
            batch_size: 500,
            interval: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(30),
            owner: String::from("unnamed"),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Another replica holds the lease.
    NotLeader,
    /// Swept, deleting this many rows.
    Deleted(u64),
}

/// One replica's sweeper of one table.
#[derive(Debug, Clone)]
pub struct Retention {
    db: DatabaseConnection,
    job: RetentionJob,
    config: RetentionConfig,
}

/// The inbox's sweeper.
pub type InboxRetention = Retention;

impl Retention {
    /// The inbox's sweeper.
    pub fn new(db: DatabaseConnection, config: RetentionConfig) -> Self {
        Self::of(db, INBOX_RETENTION, config)
    }

    /// The sweeper of `job`.
    pub fn of(db: DatabaseConnection, job: RetentionJob, config: RetentionConfig) -> Self {
        Self { db, job, config }
    }

    /// One sweep, if this replica holds (or can take) the lease.
    pub async fn activate(&self) -> Result<Sweep, DbErr> {
        let config = &self.config;
        let mut deleted = 0;
        loop {
            if !job_lease_acquire(&self.db, self.job.name, &config.owner, config.lease_ttl).await? {
                return Ok(if deleted == 0 {
                    Sweep::NotLeader
                } else {
                    Sweep::Deleted(deleted)
                });
            }
            let batch = self.delete_batch().await?;
            deleted += batch;
            if batch < u64::from(config.batch_size) {
                return Ok(Sweep::Deleted(deleted));
            }
        }
    }

    /// Sweeps every `interval` until `stop` turns true, then gives the lease up.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.activate().await {
                Ok(Sweep::Deleted(deleted)) if deleted > 0 => {
                    tracing::info!(
                        job = self.job.name,
                        deleted,
                        "retention swept old {}",
                        self.job.rows
                    )
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(job = self.job.name, error = %err, "retention sweep failed")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                _ = stop.changed() => {}
            }
        }
        let _ = job_lease_release(&self.db, self.job.name, &self.config.owner).await;
    }

    async fn delete_batch(&self) -> Result<u64, DbErr> {
        let horizon_ms = i64::try_from(self.config.horizon.as_millis()).unwrap_or(i64::MAX);
        let deleted = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                self.job.delete_batch_sql,
                [horizon_ms.into(), i64::from(self.config.batch_size).into()],
            ))
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
