//! Batched settlement: the statements that settle messages (each one whole
//! on its own — its effect, its inbox row, its event) are written by
//! group commit, many in one transaction, each still with its own result.
//!
//! ```text
//! message ─▶ settle statement ─▶ Settlement::run ─▶ writer: BEGIN
//!                                                     statement 1 → rows 1
//!                                                     statement 2 → rows 2 …
//!                                                   COMMIT ─▶ each caller its rows
//! ```
//!
//! The inbox stays per message: each statement carries its own inbox row,
//! so a duplicate in a batch is still a duplicate. When any statement of a
//! batch fails, the transaction is rolled back and every statement of it
//! runs again alone, so one message's failure never undoes another's
//! effect. When the commit itself fails, every message of the batch hears
//! it and is delivered again: its inbox row, if the commit did land, makes
//! that delivery a duplicate.

use std::sync::Arc;

use ordo_service_kit::group_commit::{BatchCounts, GroupCommit, GroupCommitConfig, WriteBatch};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};

/// One settling statement and what its result is.
#[derive(Debug, Clone)]
pub enum Write {
    /// Rows the statement changed.
    RowsAffected(Statement),
    /// The whole number the statement's one row holds (a `SELECT count(*)`).
    Count(Statement),
}

impl Write {
    async fn run<C: ConnectionTrait>(&self, conn: &C) -> Result<u64, DbErr> {
        match self {
            Self::RowsAffected(statement) => {
                Ok(conn.execute_raw(statement.clone()).await?.rows_affected())
            }
            Self::Count(statement) => {
                let row = conn.query_one_raw(statement.clone()).await?;
                let count = row.map_or(Ok(0), |row| row.try_get_by_index::<i64>(0))?;
                Ok(u64::try_from(count).unwrap_or_default())
            }
        }
    }
}

/// Settling statements, written together when they arrive together.
#[derive(Debug, Clone)]
pub struct Settlement {
    db: DatabaseConnection,
    group: Option<GroupCommit<Write, Result<u64, DbErr>>>,
}

impl Settlement {
    /// Settlement over `db`; batching off when `config.max_batch` is 1
    /// (each statement then runs alone, as its own transaction).
    pub fn new(db: DatabaseConnection, config: GroupCommitConfig) -> Self {
        let group = config.is_batching().then(|| {
            let writer = db.clone();
            let write: WriteBatch<Write, Result<u64, DbErr>> = Arc::new(move |writes| {
                let db = writer.clone();
                Box::pin(async move { write_together(&db, writes).await })
            });
            GroupCommit::start(config, write)
        });
        Self { db, group }
    }

    /// Runs `write`, in a transaction shared with the writes queued beside
    /// it; its result once that transaction committed.
    pub async fn run(&self, write: Write) -> Result<u64, DbErr> {
        match &self.group {
            Some(group) => group
                .submit(write)
                .await
                .map_err(|stopped| DbErr::Custom(stopped.to_string()))?,
            None => write.run(&self.db).await,
        }
    }

    /// (transactions, statements in them) so far; none with batching off.
    pub fn counts(&self) -> Option<Arc<BatchCounts>> {
        self.group.as_ref().map(GroupCommit::counts)
    }
}

async fn write_together(db: &DatabaseConnection, writes: Vec<Write>) -> Vec<Result<u64, DbErr>> {
    together_or_alone(
        db,
        &writes,
        async |txn, writes| {
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                results.push(write.run(txn).await?);
            }
            Ok(results)
        },
        async |db, write| write.run(db).await,
    )
    .await
}

/// Writes `jobs` through `together` in one transaction, one outcome per
/// job. One job is written `alone`, as its own transaction. When a
/// statement of the batch fails, the transaction is rolled back and every
/// job is written `alone`, one after another in arrival order (one job's
/// failure never undoes another's effect); when the commit itself fails,
/// every job hears so (written or not: delivered again, its inbox row
/// decides).
pub async fn together_or_alone<J, O>(
    db: &DatabaseConnection,
    jobs: &[J],
    together: impl AsyncFnOnce(&DatabaseTransaction, &[J]) -> Result<Vec<O>, DbErr>,
    alone: impl AsyncFn(&DatabaseConnection, &J) -> Result<O, DbErr>,
) -> Vec<Result<O, DbErr>> {
    if let [job] = jobs {
        return vec![alone(db, job).await];
    }
    let failed = match db.begin().await {
        Err(err) => err,
        Ok(txn) => match together(&txn, jobs).await {
            Ok(outcomes) => {
                return match txn.commit().await {
                    Ok(()) => outcomes.into_iter().map(Ok).collect(),
                    Err(why) => jobs
                        .iter()
                        .map(|_| Err(DbErr::Custom(format!("the batch's commit failed: {why}"))))
                        .collect(),
                };
            }
            Err(err) => {
                let _ = txn.rollback().await;
                err
            }
        },
    };
    tracing::debug!(error = %failed, jobs = jobs.len(), "a batch failed before its commit; each job is written alone");
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(alone(db, job).await);
    }
    outcomes
}
