//! A replica's partition claims that come at once, made in one statement.
//!
//! ```text
//! actor p3 ─claim(p3, acked)─┐
//! actor p7 ─claim(p7, acked)─┼─▶ group commit (one writer) ─▶ CLAIM_PARTITIONS_SQL
//! actor p9 ─claim(p9, acked)─┘      deletes every acked row, claims each partition
//!                                    ─▶ each actor its own partition's rows
//! ```
//!
//! One commit writing orders of several partitions nudges their actors at
//! the same moment; without this, each ran a claim of its own for the one
//! or two rows it found. Nothing waits on purpose: a claim that finds the
//! writer idle is made at once, alone; claims that come while it is busy go
//! together in the next statement. Each partition is still claimed by its
//! own actor, fenced by its own lease, and published by it alone. A
//! partition draining a backlog (its last batch was full) claims alone, on
//! a connection of its own: grouped, every actor of a draining relay
//! waited for one statement (measured: the drain of 100,000 rows fell from
//! 31,000–45,000 to 24,000 events/s).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use ordo_service_kit::group_commit::{GroupCommit, GroupCommitConfig, WriteBatch};
use sea_orm::{DatabaseConnection, DbErr};

use crate::claims::{ClaimJob, outbox_claim_batch, outbox_claim_partitions};
use crate::entity;
use crate::metrics::RelayMetrics;

type Claimed = Result<Vec<entity::Model>, DbErr>;

/// Where a replica's relay actors claim their rows.
#[derive(Clone)]
pub struct ClaimGroup {
    db: DatabaseConnection,
    owner: Arc<str>,
    batch_size: u32,
    metrics: Arc<RelayMetrics>,
    /// `None`: every partition claims alone (`OUTBOX_CLAIM_GROUP_MAX=1`).
    group: Option<GroupCommit<ClaimJob, Claimed>>,
}

impl std::fmt::Debug for ClaimGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimGroup")
            .field("owner", &self.owner)
            .field("grouped", &self.group.is_some())
            .finish_non_exhaustive()
    }
}

impl ClaimGroup {
    /// Claims of up to `max_partitions` partitions in one statement (1: each
    /// alone). Starts its writer on the current tokio runtime.
    pub fn start(
        db: DatabaseConnection,
        owner: Arc<str>,
        batch_size: u32,
        max_partitions: usize,
        metrics: Arc<RelayMetrics>,
    ) -> Self {
        let group = (max_partitions > 1).then(|| {
            let (db, owner, metrics) = (db.clone(), Arc::clone(&owner), Arc::clone(&metrics));
            let write: WriteBatch<ClaimJob, Claimed> = Arc::new(move |jobs| {
                let (db, owner, metrics) = (db.clone(), Arc::clone(&owner), Arc::clone(&metrics));
                Box::pin(async move {
                    let claims = outbox_claim_partitions(&db, &owner, batch_size, &jobs).await;
                    metrics.claim_statements.fetch_add(1, Relaxed);
                    claims
                })
            });
            GroupCommit::start(GroupCommitConfig::batching(max_partitions, 1), write)
        });
        Self {
            db,
            owner,
            batch_size,
            metrics,
            group,
        }
    }

    /// Up to a batch of `partition`'s rows in id order, if this replica
    /// still holds its lease; `acked` (rows of its round before) deleted
    /// in the same statement. A partition with a backlog (its last batch
    /// was full) claims alone: its claim is worth a statement of its own,
    /// and waiting behind the others would only slow a drain.
    pub async fn claim(&self, partition: i32, acked: &[i64], backlog: bool) -> Claimed {
        match &self.group {
            Some(group) if !backlog => group
                .submit(ClaimJob {
                    partition,
                    acked: acked.to_vec(),
                })
                .await
                .map_err(|stopped| DbErr::Custom(stopped.to_string()))?,
            _ => {
                self.metrics.claim_statements.fetch_add(1, Relaxed);
                outbox_claim_batch(&self.db, partition, &self.owner, self.batch_size, acked).await
            }
        }
    }
}
