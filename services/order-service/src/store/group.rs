//! Group commit for PlaceOrder and CancelOrder: the requests that arrive
//! while a commit is in flight are written together in the next
//! transaction, each with its own outcome.
//!
//! ```text
//! PlaceOrder ─▶ PlaceJob (order, key, event: built in the request's span)
//!            ─▶ GroupCommit ─▶ place_batch: claim the keys (one statement)
//!                                           write the winners (one statement)
//!                                           commit ─▶ Created / replay / conflict per job
//! ```
//!
//! One request's conflict never fails another's: a key already used is
//! that request's replay (or ALREADY_EXISTS), decided per row. When the
//! batch itself fails before its commit (an invalid row, a lost
//! connection), nothing of it was written and each request is written
//! alone, as with batching off. When the commit's outcome is unknown, every
//! request of the batch hears so: none is acknowledged.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ordo_outbox::{OutboxEvent, OutboxRow, PartitionCount};
use ordo_service_kit::group_commit::{BatchCounts, GroupCommit, GroupCommitConfig, WriteBatch};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, TransactionTrait};

use super::entity::orders;
use super::{OrderStore, Placement, StoreError, lines_of, now_micros, rows};
use crate::domain::lifecycle::{self, Change, Decision};
use crate::domain::{
    CancelReason, CorrelationId, NewOrder, Order, OrderId, OrderLine, OrderStatus,
};
use crate::events;

/// A placement ready to write: the order, its idempotency key with the
/// request's fingerprint, and its `OrderPlaced` row.
#[derive(Debug, Clone)]
pub(super) struct PlaceJob {
    pub order: Order,
    pub idempotency: Option<(String, Vec<u8>)>,
    pub event: OutboxRow,
}

impl PlaceJob {
    /// The order `new_order` becomes, with a fresh id; its event carries
    /// the calling span's trace context.
    pub fn new(
        new_order: NewOrder,
        correlation_id: CorrelationId,
        partitions: PartitionCount,
    ) -> Self {
        let now = now_micros();
        let idempotency = new_order
            .idempotency_key
            .as_ref()
            .map(|key| (key.as_str().to_owned(), new_order.fingerprint()));
        let order = Order {
            id: OrderId::generate(),
            customer_id: new_order.customer_id,
            lines: new_order
                .lines
                .into_iter()
                .map(|line| OrderLine {
                    sku: line.sku,
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                })
                .collect(),
            currency: new_order.currency,
            total_minor: new_order.total_minor,
            status: OrderStatus::Pending,
            status_reason: String::new(),
            correlation_id,
            created_at: now,
            updated_at: now,
        };
        let event = OutboxRow::of(partitions, &events::order_placed(&order));
        Self {
            order,
            idempotency,
            event,
        }
    }
}

/// A cancellation to decide under the order's lock.
#[derive(Debug, Clone)]
pub(super) struct CancelJob {
    pub id: OrderId,
    reason: CancelReason,
    correlation_id: CorrelationId,
    /// The calling span's trace context, for the event written elsewhere.
    trace: Vec<(String, String)>,
}

impl CancelJob {
    pub fn new(id: OrderId, reason: CancelReason, correlation_id: CorrelationId) -> Self {
        Self {
            id,
            reason,
            correlation_id,
            trace: ordo_telemetry::propagation::current_headers(),
        }
    }

    /// Cancels `order` in memory if its status allows (the lifecycle
    /// decides), returning its `OrderCancelled` event.
    pub fn apply(
        &self,
        order: &mut Order,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<OutboxEvent, StoreError> {
        let Decision::Move { status, .. } = lifecycle::decide(order.status, &Change::Cancel) else {
            return Err(StoreError::CannotCancel(order.status));
        };
        order.status = status;
        order.status_reason = self.reason.as_str().to_owned();
        order.updated_at = now;
        let mut event = events::order_cancelled(order, &self.reason, &self.correlation_id);
        event.headers.extend(self.trace.iter().cloned());
        Ok(event)
    }
}

type PlaceOutcome = Result<Placement, StoreError>;
type CancelOutcome = Result<Order, StoreError>;

/// The writers of both requests.
#[derive(Debug, Clone)]
pub(super) struct Groups {
    place: GroupCommit<PlaceJob, PlaceOutcome>,
    cancel: GroupCommit<CancelJob, CancelOutcome>,
}

impl Groups {
    /// Writers over `store` (a store without groups of its own).
    pub fn start(store: OrderStore, config: GroupCommitConfig) -> Self {
        let placer = store.clone();
        let place: WriteBatch<PlaceJob, PlaceOutcome> = Arc::new(move |jobs| {
            let store = placer.clone();
            Box::pin(async move { store.place_batch(jobs).await })
        });
        let cancel: WriteBatch<CancelJob, CancelOutcome> = Arc::new(move |jobs| {
            let store = store.clone();
            Box::pin(async move { store.cancel_batch(jobs).await })
        });
        Self {
            place: GroupCommit::start(config, place),
            cancel: GroupCommit::start(config, cancel),
        }
    }

    pub async fn place(&self, job: PlaceJob) -> PlaceOutcome {
        self.place.submit(job).await.map_err(stopped)?
    }

    pub async fn cancel(&self, job: CancelJob) -> CancelOutcome {
        self.cancel.submit(job).await.map_err(stopped)?
    }

    pub fn counters(&self) -> Vec<(&'static str, Arc<BatchCounts>)> {
        vec![
            ("place_order", self.place.counts()),
            ("cancel_order", self.cancel.counts()),
        ]
    }
}

fn stopped(err: ordo_service_kit::group_commit::WritersStopped) -> StoreError {
    StoreError::Unavailable(DbErr::Custom(err.to_string()))
}

/// Why a batch was not written whole.
enum BatchFailure {
    /// Nothing was written: each request may be written alone.
    NothingWritten(StoreError),
    /// The connection broke during COMMIT: the batch may be written or not.
    OutcomeUnknown(String),
}

impl From<DbErr> for BatchFailure {
    fn from(err: DbErr) -> Self {
        Self::NothingWritten(err.into())
    }
}

impl From<StoreError> for BatchFailure {
    fn from(err: StoreError) -> Self {
        Self::NothingWritten(err)
    }
}

async fn commit(txn: sea_orm::DatabaseTransaction) -> Result<(), BatchFailure> {
    txn.commit()
        .await
        .map_err(|err| match StoreError::from_commit(err) {
            StoreError::CommitOutcomeUnknown(err) => BatchFailure::OutcomeUnknown(err.to_string()),
            other => BatchFailure::NothingWritten(other),
        })
}

fn unknown<T>(count: usize, why: &str) -> Vec<Result<T, StoreError>> {
    (0..count)
        .map(|_| {
            Err(StoreError::CommitOutcomeUnknown(DbErr::Custom(
                why.to_owned(),
            )))
        })
        .collect()
}

/// What the batch's transaction did for one placement.
enum Written {
    Created(Order),
    /// The key was taken (before, or by an earlier request of this batch):
    /// its first order is this request's answer, read after the commit.
    Replay {
        key: String,
        fingerprint: Vec<u8>,
    },
}

impl OrderStore {
    async fn place_batch(&self, mut jobs: Vec<PlaceJob>) -> Vec<PlaceOutcome> {
        if jobs.len() == 1
            && let Some(job) = jobs.pop()
        {
            return vec![self.place_one(job).await];
        }
        match self.place_together(&jobs).await {
            Ok(written) => {
                futures::future::join_all(written.into_iter().map(|written| async move {
                    match written {
                        Written::Created(order) => Ok(Placement::Created(order)),
                        Written::Replay { key, fingerprint } => {
                            self.order_replay(&key, &fingerprint).await
                        }
                    }
                }))
                .await
            }
            Err(BatchFailure::OutcomeUnknown(why)) => unknown(jobs.len(), &why),
            Err(BatchFailure::NothingWritten(err)) => {
                tracing::warn!(error = %err, placements = jobs.len(), "group commit failed; writing each placement alone");
                futures::future::join_all(jobs.into_iter().map(|job| self.place_one(job))).await
            }
        }
    }

    /// Every placement of `jobs` in one transaction: the keys claimed in
    /// one statement, the winners' orders, lines and events in another.
    async fn place_together(&self, jobs: &[PlaceJob]) -> Result<Vec<Written>, BatchFailure> {
        let txn = self.db.begin().await?;
        // The first request with a key claims it; a later one in the same
        // batch replays what the first did.
        let mut keys_seen = HashSet::new();
        let claims: Vec<rows::KeyClaim<'_>> = jobs
            .iter()
            .filter_map(|job| {
                let (key, fingerprint) = job.idempotency.as_ref()?;
                keys_seen.insert(key.as_str()).then_some(rows::KeyClaim {
                    key,
                    fingerprint,
                    order: &job.order,
                })
            })
            .collect();
        let claimed: HashSet<uuid::Uuid> = if claims.is_empty() {
            HashSet::new()
        } else {
            txn.query_all_raw(rows::keys_claim_statement(&claims))
                .await?
                .iter()
                .map(|row| row.try_get::<uuid::Uuid>("", "order_id"))
                .collect::<Result<_, _>>()?
        };
        let mut written = Vec::with_capacity(jobs.len());
        let mut placed = Vec::with_capacity(jobs.len());
        for job in jobs {
            match &job.idempotency {
                Some((key, fingerprint)) if !claimed.contains(&job.order.id.as_uuid()) => {
                    written.push(Written::Replay {
                        key: key.clone(),
                        fingerprint: fingerprint.clone(),
                    });
                }
                _ => {
                    placed.push((&job.order, job.event.clone()));
                    written.push(Written::Created(job.order.clone()));
                }
            }
        }
        if !placed.is_empty() {
            txn.execute_raw(rows::orders_insert_statement(&placed))
                .await?;
        }
        commit(txn).await?;
        self.nudge_all(placed.iter().map(|(_, event)| event.partition));
        Ok(written)
    }

    async fn cancel_batch(&self, mut jobs: Vec<CancelJob>) -> Vec<CancelOutcome> {
        if jobs.len() == 1
            && let Some(job) = jobs.pop()
        {
            return vec![self.cancel_one(job).await];
        }
        match self.cancel_together(&jobs).await {
            Ok(outcomes) => outcomes,
            Err(BatchFailure::OutcomeUnknown(why)) => unknown(jobs.len(), &why),
            Err(BatchFailure::NothingWritten(err)) => {
                tracing::warn!(error = %err, cancellations = jobs.len(), "group commit failed; writing each cancellation alone");
                // One after another: two cancellations of one order keep
                // their order.
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in jobs {
                    outcomes.push(self.cancel_one(job).await);
                }
                outcomes
            }
        }
    }

    /// Every cancellation of `jobs` in one transaction: the orders locked
    /// and read in one statement (in id order, so two batches never wait
    /// on each other in a cycle), each decided in arrival order, the moves
    /// and their events written in one statement.
    async fn cancel_together(
        &self,
        jobs: &[CancelJob],
    ) -> Result<Vec<CancelOutcome>, BatchFailure> {
        let txn = self.db.begin().await?;
        let ids: BTreeSet<uuid::Uuid> = jobs.iter().map(|job| job.id.as_uuid()).collect();
        let models = orders::Entity::find()
            .from_raw_sql(rows::orders_locked_statement(ids.iter().copied()))
            .all(&txn)
            .await?;
        let mut lines = lines_of(&txn, ids.iter().copied()).await?;
        let mut current: HashMap<uuid::Uuid, Order> = HashMap::with_capacity(models.len());
        for model in models {
            let id = model.id;
            let order_lines = lines.remove(&id).unwrap_or_default();
            current.insert(id, rows::order_from_rows(model, order_lines)?);
        }
        let now = now_micros();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut events: HashMap<uuid::Uuid, OutboxRow> = HashMap::new();
        for job in jobs {
            let outcome = match current.get_mut(&job.id.as_uuid()) {
                None => Err(StoreError::OrderNotFound(job.id)),
                Some(order) => job.apply(order, now).map(|event| {
                    events.insert(order.id.as_uuid(), OutboxRow::of(self.partitions, &event));
                    order.clone()
                }),
            };
            outcomes.push(outcome);
        }
        let moved: Vec<(&Order, OutboxRow)> = events
            .into_iter()
            .filter_map(|(id, event)| Some((current.get(&id)?, event)))
            .collect();
        if !moved.is_empty() {
            txn.execute_raw(rows::cancellations_statement(&moved))
                .await?;
        }
        commit(txn).await?;
        self.nudge_all(moved.iter().map(|(_, event)| event.partition));
        Ok(outcomes)
    }

    fn nudge_all(&self, partitions: impl IntoIterator<Item = i32>) {
        for partition in partitions.into_iter().collect::<BTreeSet<_>>() {
            self.nudge(partition);
        }
    }
}
