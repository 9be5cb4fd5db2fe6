//! Partition leases in PostgreSQL.
//!
//! Each partition has one row in `outbox_leases` with an owner and an
//! expiry. An owner renews its leases every heartbeat (a third of the TTL);
//! a partition whose lease expired, or was released, is free for anyone.
//! Live replicas register in `outbox_relay_members` on the same heartbeat,
//! so each knows the group size R and takes at most its fair share,
//! `ceil(P / R)`, releasing any excess for the others to take.
//!
//! Why lease rows and not session advisory locks: a lock dies with its
//! session, and PostgreSQL may not notice a vanished host for minutes (TCP
//! keepalive), so takeover time would be unbounded; a lease is gone after
//! its TTL whatever happened to its owner. Leases also show who holds what
//! (`SELECT * FROM outbox_leases`), and make fair sharing a query.
//!
//! Timing: a renewal keeps a lease for two thirds of `OUTBOX_LEASE_TTL` and
//! heartbeats come every quarter, so a dead owner's partitions are free at
//! most 2/3 TTL after its last renewal and taken at the next heartbeat of a
//! survivor: within the TTL. (Its membership row expires with its leases,
//! so survivors' fair share already counts it out.)
//!
//! Failure modes, and why none of them publishes out of order:
//! - The owner dies: its leases expire and others take them, as above.
//! - The owner stalls past its expiry (a pause — SIGSTOP, a VM pause, a
//!   stall — or a lost database): publishing is fenced by the lease. Every
//!   claim re-checks the lease in SQL (database time), and every publish of
//!   a round first checks the replica's [`LeaseView`] of that partition —
//!   measured from before the renewal was sent, so never later than the
//!   database's expiry — and the round is abandoned the moment the view has
//!   run out (a margin early). A round paused after its claim therefore
//!   publishes nothing more when it resumes, however long the pause, and a
//!   partition taken away has its round in flight aborted, not waited for.
//!   What is left is the span between that check and the bytes leaving the
//!   process (microseconds); a publish caught there lands as a duplicate
//!   that JetStream drops inside its window, and consumers' inboxes
//!   outside it.
//! - Clocks: expiry is compared with the database's `now()` only; the local
//!   view uses a monotonic clock, which goes on while a process is stopped.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use tokio::time::Instant;

/// This replica's view of its partition leases: until when each is
/// certainly its own (on the monotonic clock), or not at all. The
/// supervisor keeps it; every publish of a round asks it.
#[derive(Debug)]
pub struct LeaseView {
    base: Instant,
    /// Per partition: nanoseconds after `base` until which it is held; 0 for not held.
    until: Vec<AtomicU64>,
}

impl LeaseView {
    pub fn new(partitions: u32) -> Self {
        Self {
            base: Instant::now(),
            until: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, partition: i32) -> Option<&AtomicU64> {
        usize::try_from(partition)
            .ok()
            .and_then(|partition| self.until.get(partition))
    }

    /// `partition` is held until `until`.
    pub fn hold(&self, partition: i32, until: Instant) {
        if let Some(slot) = self.slot(partition) {
            let nanos = until.saturating_duration_since(self.base).as_nanos();
            slot.store(
                u64::try_from(nanos).unwrap_or(u64::MAX).max(1),
                Ordering::SeqCst,
            );
        }
    }

    /// `partition` is no longer held (lost, handed back, or unsure).
    pub fn drop_partition(&self, partition: i32) {
        if let Some(slot) = self.slot(partition) {
            slot.store(0, Ordering::SeqCst);
        }
    }

    /// Whether `partition` is certainly held for at least `margin` more.
    pub fn holds(&self, partition: i32, margin: Duration) -> bool {
        let Some(until) = self.slot(partition).map(|slot| slot.load(Ordering::SeqCst)) else {
            return false;
        };
        until != 0 && {
            let now = (Instant::now() + margin).saturating_duration_since(self.base);
            u128::from(until) > now.as_nanos()
        }
    }
}

/// What one heartbeat found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRound {
    /// Partitions this owner holds now (renewed or newly acquired).
    pub held: BTreeSet<i32>,
    /// Of those, partitions to hand back: more than the fair share.
    pub surplus: BTreeSet<i32>,
    /// Live replicas, this one included.
    pub members: u32,
    /// Until when the held leases are certainly ours.
    pub valid_until: Instant,
}

/// One owner's view of the lease table.
#[derive(Debug, Clone)]
pub struct Leases {
    db: DatabaseConnection,
    owner: String,
    partitions: u32,
    ttl: Duration,
}

impl Leases {
    pub fn new(db: DatabaseConnection, owner: String, partitions: u32, ttl: Duration) -> Self {
        Self {
            db,
            owner,
            partitions,
            ttl,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn statement(&self, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    }

    fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Makes sure every partition has a lease row.
    pub async fn lease_rows_create(&self) -> Result<(), DbErr> {
        self.db
            .execute_raw(self.statement(
                "INSERT INTO outbox_leases (partition) \
                 SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                [i64::from(self.partitions).into()],
            ))
            .await?;
        Ok(())
    }

    /// Registers as live, renews held leases, and acquires free partitions
    /// up to the fair share. `releasing` are partitions already being handed
    /// back: they are renewed until released but not counted as kept.
    pub async fn heartbeat(&self, releasing: &BTreeSet<i32>) -> Result<LeaseRound, DbErr> {
        let started = Instant::now();
        let owner: Value = self.owner.clone().into();
        let ttl: Value = self.ttl_millis().into();
        self.db
            .execute_raw(self.statement(
                "INSERT INTO outbox_relay_members (owner, expires_at) \
                 VALUES ($1, now() + $2 * interval '1 millisecond') \
                 ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
                [owner.clone(), ttl.clone()],
            ))
            .await?;
        self.db
            .execute_unprepared(
                "DELETE FROM outbox_relay_members WHERE expires_at < now() - interval '1 minute'",
            )
            .await?;
        // Registered as alive (a repartition must wait for it). A count
        // changed under a running replica (`ordo-migrate
        // repartition`): renew nothing, so its actors stop.
        if let Some(recorded) = crate::repartition::outbox_partitions_recorded(&self.db).await?
            && recorded != self.partitions
        {
            return Err(DbErr::Custom(format!(
                "the outbox is now written with {recorded} partitions, this replica runs {}: \
                 renewing nothing (restart it with OUTBOX_PARTITIONS={recorded})",
                self.partitions
            )));
        }
        let members = self
            .db
            .query_one_raw(self.statement(
                "SELECT count(*) AS n FROM outbox_relay_members WHERE expires_at > now()",
                [],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        let members = u32::try_from(members).unwrap_or(u32::MAX);
        let fair_share = self.partitions.div_ceil(members) as usize;

        let mut held = self
            .partitions_returned(self.statement(
                "UPDATE outbox_leases SET expires_at = now() + $2 * interval '1 millisecond' \
                 WHERE owner = $1 AND expires_at > now() AND partition < $3 \
                 RETURNING partition",
                [
                    owner.clone(),
                    ttl.clone(),
                    i64::from(self.partitions).into(),
                ],
            ))
            .await?;
        let kept: Vec<i32> = held.difference(releasing).copied().collect();
        let surplus: BTreeSet<i32> = kept
            .iter()
            .rev()
            .take(kept.len().saturating_sub(fair_share))
            .copied()
            .collect();
        let wanted = fair_share.saturating_sub(held.len());
        if wanted > 0 {
            let acquired = self
                .partitions_returned(self.statement(
                    "UPDATE outbox_leases SET owner = $1, \
                     expires_at = now() + $2 * interval '1 millisecond' \
                     WHERE partition IN ( \
                       SELECT partition FROM outbox_leases \
                       WHERE partition < $3 AND (owner IS NULL OR expires_at <= now()) \
                       ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING partition",
                    [
                        owner,
                        ttl,
                        i64::from(self.partitions).into(),
                        i64::try_from(wanted).unwrap_or(i64::MAX).into(),
                    ],
                ))
                .await?;
            held.extend(acquired);
        }
        Ok(LeaseRound {
            held,
            surplus,
            members,
            valid_until: started + self.ttl,
        })
    }

    /// Hands `partitions` back at once, for another replica to take.
    pub async fn release(&self, partitions: &BTreeSet<i32>) -> Result<(), DbErr> {
        if partitions.is_empty() {
            return Ok(());
        }
        let list: Vec<i32> = partitions.iter().copied().collect();
        self.db
            .execute_raw(self.statement(
                "UPDATE outbox_leases SET owner = NULL, expires_at = '-infinity' \
                 WHERE owner = $1 AND partition = ANY($2)",
                [self.owner.clone().into(), Value::from(list)],
            ))
            .await?;
        Ok(())
    }

    /// Releases every lease and leaves the group (graceful shutdown).
    pub async fn leave(&self) -> Result<(), DbErr> {
        let owner: Value = self.owner.clone().into();
        self.db
            .execute_raw(self.statement(
                "UPDATE outbox_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1",
                [owner.clone()],
            ))
            .await?;
        self.db
            .execute_raw(
                self.statement("DELETE FROM outbox_relay_members WHERE owner = $1", [owner]),
            )
            .await?;
        Ok(())
    }

    async fn partitions_returned(&self, statement: Statement) -> Result<BTreeSet<i32>, DbErr> {
        self.db
            .query_all_raw(statement)
            .await?
            .into_iter()
            .map(|row| row.try_get::<i32>("", "partition"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_says_held_only_until_its_deadline_less_the_margin() {
        let view = LeaseView::new(4);
        assert!(!view.holds(1, Duration::ZERO), "nothing held at first");
        view.hold(1, Instant::now() + Duration::from_secs(10));
        assert!(view.holds(1, Duration::from_secs(1)));
        assert!(!view.holds(1, Duration::from_secs(11)));
        assert!(!view.holds(2, Duration::ZERO));
        view.drop_partition(1);
        assert!(!view.holds(1, Duration::ZERO));
        view.hold(3, Instant::now());
        assert!(
            !view.holds(3, Duration::ZERO),
            "a deadline passed is not held"
        );
        assert!(!view.holds(99, Duration::ZERO));
        assert!(!view.holds(-1, Duration::ZERO));
    }
}
