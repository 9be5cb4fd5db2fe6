//! The order store: orders, their lines, idempotency keys and outbox rows in
//! PostgreSQL through SeaORM. Entity ↔ domain conversion happens here and
//! nowhere else. Every method that changes state writes the matching outbox
//! event in the same transaction.

mod entity;
mod error;
mod group;
mod rows;
mod verdicts;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ordo_outbox::{Nudger, PartitionCount, outbox_insert_in_txn};
use ordo_service_kit::group_commit::{BatchCounts, GroupCommitConfig};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

pub use error::StoreError;

use crate::domain::lifecycle::{self, Change, Decision};
use crate::domain::{
    CancelReason, CorrelationId, ListQuery, NewOrder, Order, OrderId, OrderStatus, PageCursor,
};
use crate::status::StatusEvent;
use entity::{idempotency_keys, order_lines, orders};

/// What PlaceOrder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new order and its `OrderPlaced` event were written.
    Created(Order),
    /// The idempotency key was seen before with this request: nothing was
    /// written and this is the first call's order.
    Replayed(Order),
}

impl Placement {
    pub fn order(&self) -> &Order {
        match self {
            Self::Created(order) | Self::Replayed(order) => order,
        }
    }
}

/// What a status message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// The order moved to this status (or, for a refund, it was recorded).
    Applied(String),
    /// The message could not apply; why is recorded in the inbox.
    Ignored(String),
    /// The inbox had seen this message: nothing was done.
    Duplicate,
}

/// A page of orders and, when more follow, where the next page starts.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next: Option<PageCursor>,
}

/// Orders in PostgreSQL.
#[derive(Debug, Clone)]
pub struct OrderStore {
    db: DatabaseConnection,
    partitions: PartitionCount,
    nudger: Option<Nudger>,
    /// The writers of group commit, when it is on.
    groups: Option<group::Groups>,
    /// Where verdicts on PENDING orders are written: many to a statement
    /// when they arrive together (batching off unless configured).
    verdicts: verdicts::VerdictMoves,
}

impl OrderStore {
    /// A store writing events into `partitions` outbox partitions, nudging
    /// the local relay (when there is one) after each commit.
    pub fn new(db: DatabaseConnection, partitions: PartitionCount, nudger: Option<Nudger>) -> Self {
        let verdicts = verdicts::VerdictMoves::new(db.clone(), GroupCommitConfig::OFF);
        Self {
            db,
            partitions,
            nudger,
            groups: None,
            verdicts,
        }
    }

    /// The same store settling verdicts by group commit (`config`).
    pub fn with_status_settlement(self, config: GroupCommitConfig) -> Self {
        Self {
            verdicts: verdicts::VerdictMoves::new(self.db.clone(), config),
            ..self
        }
    }

    /// The same store with group commit for PlaceOrder and CancelOrder
    /// (writers started on the current runtime); batching off when
    /// `config.max_batch` is 1.
    pub fn with_group_commit(self, config: GroupCommitConfig) -> Self {
        let groups = config
            .is_batching()
            .then(|| group::Groups::start(self.clone(), config));
        Self { groups, ..self }
    }

    /// Group commit's counts (transactions, requests in them) by request
    /// kind (`place_order`, `cancel_order`, and `status` for verdicts);
    /// none of a kind whose batching is off.
    pub fn group_commit_counters(&self) -> Vec<(&'static str, Arc<BatchCounts>)> {
        let mut counters = self
            .groups
            .as_ref()
            .map(group::Groups::counters)
            .unwrap_or_default();
        counters.extend(self.verdicts.counts().map(|counts| ("status", counts)));
        counters
    }

    /// The store's pool (for background jobs on the same database).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn nudge(&self, partition: i32) {
        if let Some(nudger) = &self.nudger {
            nudger.nudge(partition);
        }
    }

    /// Writes a new order, its lines and its `OrderPlaced` outbox row in one
    /// transaction; with an idempotency key already used, writes nothing and
    /// returns the first order (or [`StoreError::IdempotencyConflict`] when
    /// the request differs). With group commit on, the transaction is
    /// shared with the placements that arrived while the last one committed;
    /// the answer still comes only after this order's rows are durable.
    pub async fn order_create(
        &self,
        new_order: NewOrder,
        correlation_id: CorrelationId,
    ) -> Result<Placement, StoreError> {
        let job = group::PlaceJob::new(new_order, correlation_id, self.partitions);
        match &self.groups {
            Some(groups) => groups.place(job).await,
            None => self.place_one(job).await,
        }
    }

    /// One placement in a transaction of its own.
    async fn place_one(&self, job: group::PlaceJob) -> Result<Placement, StoreError> {
        let group::PlaceJob {
            order,
            idempotency,
            event,
        } = job;
        let txn = self.db.begin().await?;
        if let Some((key, fingerprint)) = &idempotency {
            // On a key another transaction holds, this waits for its outcome:
            // committed → no row inserted here; rolled back → ours wins.
            let claimed = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
                key: Set(key.clone()),
                request_hash: Set(fingerprint.clone()),
                order_id: Set(order.id.as_uuid()),
                created_at: Set(order.created_at.fixed_offset()),
            })
            .on_conflict(
                OnConflict::column(idempotency_keys::Column::Key)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            if claimed == 0 {
                txn.rollback().await?;
                return self.order_replay(key, fingerprint).await;
            }
        }
        let partition = event.partition;
        txn.execute_raw(rows::orders_insert_statement(&[(&order, event)]))
            .await?;
        txn.commit().await.map_err(StoreError::from_commit)?;
        self.nudge(partition);
        Ok(Placement::Created(order))
    }

    async fn order_replay(&self, key: &str, fingerprint: &[u8]) -> Result<Placement, StoreError> {
        let first = idempotency_keys::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency key {key:?} vanished")))?;
        if first.request_hash != fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        let order = self.order_get(OrderId::from_uuid(first.order_id)).await?;
        Ok(Placement::Replayed(order))
    }

    /// One order with its lines.
    pub async fn order_get(&self, id: OrderId) -> Result<Order, StoreError> {
        order_get_in_txn(&self.db, id, false).await
    }

    /// A page of orders, newest first, after the query's cursor.
    pub async fn order_list(&self, query: &ListQuery) -> Result<OrderPage, StoreError> {
        let page_size = query.page_size.get();
        let mut select = orders::Entity::find();
        if let Some(customer_id) = &query.customer_id {
            select = select.filter(orders::Column::CustomerId.eq(customer_id.as_str()));
        }
        if let Some(status) = query.status {
            select = select.filter(orders::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = &query.after {
            // A row comparison, so PostgreSQL walks the (created_at, id) index.
            select = select.filter(Expr::cust_with_values(
                "(created_at, id) < ($1, $2)",
                [
                    sea_orm::Value::from(after.created_at.fixed_offset()),
                    sea_orm::Value::from(after.id.as_uuid()),
                ],
            ));
        }
        let mut models = select
            .order_by_desc(orders::Column::CreatedAt)
            .order_by_desc(orders::Column::Id)
            .limit(u64::from(page_size) + 1)
            .all(&self.db)
            .await?;
        let has_more = models.len() > page_size as usize;
        models.truncate(page_size as usize);

        let mut lines = lines_of(&self.db, models.iter().map(|model| model.id)).await?;
        let orders = models
            .into_iter()
            .map(|model| {
                let order_lines = lines.remove(&model.id).unwrap_or_default();
                rows::order_from_rows(model, order_lines)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = has_more
            .then(|| orders.last())
            .flatten()
            .map(|last| PageCursor {
                created_at: last.created_at,
                id: last.id,
            });
        Ok(OrderPage { orders, next })
    }

    /// Cancels a PENDING or CONFIRMED order and writes its `OrderCancelled`
    /// outbox row, in one transaction holding the order's row lock (shared,
    /// with group commit on, with the cancellations that arrived while the
    /// last one committed).
    pub async fn order_cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        correlation_id: CorrelationId,
    ) -> Result<Order, StoreError> {
        let job = group::CancelJob::new(id, reason, correlation_id);
        match &self.groups {
            Some(groups) => groups.cancel(job).await,
            None => self.cancel_one(job).await,
        }
    }

    /// One cancellation in a transaction of its own.
    async fn cancel_one(&self, job: group::CancelJob) -> Result<Order, StoreError> {
        let txn = self.db.begin().await?;
        let mut order = order_get_in_txn(&txn, job.id, true).await?;
        let event = job.apply(&mut order, now_micros())?;
        orders::Entity::update_many()
            .col_expr(orders::Column::Status, Expr::value(order.status.as_str()))
            .col_expr(
                orders::Column::StatusReason,
                Expr::value(order.status_reason.clone()),
            )
            .col_expr(
                orders::Column::UpdatedAt,
                Expr::value(order.updated_at.fixed_offset()),
            )
            .filter(orders::Column::Id.eq(job.id.as_uuid()))
            .exec(&txn)
            .await?;
        let partition = outbox_insert_in_txn(&txn, self.partitions, &event).await?;
        txn.commit().await.map_err(StoreError::from_commit)?;
        self.nudge(partition);
        Ok(order)
    }
}

/// The sweep of PlaceOrder's idempotency keys older than
/// `IDEMPOTENCY_KEY_RETENTION` (their orders stay).
pub const IDEMPOTENCY_KEY_RETENTION: ordo_inbox::RetentionJob = ordo_inbox::RetentionJob {
    name: "idempotency-key-retention",
    rows: "idempotency keys",
    delete_batch_sql: "DELETE FROM idempotency_keys WHERE key IN ( \
       SELECT key FROM idempotency_keys \
       WHERE created_at < now() - $1 * interval '1 millisecond' \
       ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
};

impl OrderStore {
    /// Applies one status message in one transaction: locks the order,
    /// moves it (PENDING → CONFIRMED or REJECTED) or ignores a message it
    /// cannot apply, and records the message in the inbox under
    /// `(consumer, message_id)`. A message the inbox has seen changes
    /// nothing, even when delivered twice at once (the second waits on the
    /// inbox key, then finds it taken and rolls back).
    pub async fn order_status_apply(
        &self,
        consumer: &str,
        message_id: &str,
        subject: &str,
        delivery: ordo_inbox::Delivery,
        event: Result<StatusEvent, String>,
    ) -> Result<StatusOutcome, StoreError> {
        let delivery = ordo_inbox::Delivery {
            order_id: event.as_ref().ok().map(|event| event.order_id.as_uuid()),
            ..delivery
        };
        if let Ok(event) = &event
            && let Some(outcome) = self
                .status_apply_at_once(consumer, message_id, subject, &delivery, event)
                .await?
        {
            return Ok(outcome);
        }
        let txn = self.db.begin().await?;
        let outcome = match event {
            Err(undecodable) => StatusOutcome::Ignored(format!("undecodable: {undecodable}")),
            Ok(event) => status_apply_in_txn(&txn, &event).await?,
        };
        let recorded = match &outcome {
            StatusOutcome::Applied(what) => format!("applied: {what}"),
            StatusOutcome::Ignored(why) => format!("ignored: {why}"),
            StatusOutcome::Duplicate => String::new(),
        };
        if !ordo_inbox::inbox_record_in_txn(
            &txn, consumer, message_id, subject, &recorded, &delivery,
        )
        .await?
        {
            txn.rollback().await?;
            return Ok(StatusOutcome::Duplicate);
        }
        txn.commit().await.map_err(StoreError::from_commit)?;
        Ok(outcome)
    }
}

impl OrderStore {
    /// The common case in one statement: a verdict on a PENDING order
    /// moves it and records the message in the inbox, the inbox row only
    /// if the move happened. `None` when the order was not PENDING (or
    /// absent), or a concurrent copy of the message holds the inbox key
    /// (the statement then fails whole): the caller decides under a lock.
    async fn status_apply_at_once(
        &self,
        consumer: &str,
        message_id: &str,
        subject: &str,
        delivery: &ordo_inbox::Delivery,
        event: &StatusEvent,
    ) -> Result<Option<StatusOutcome>, StoreError> {
        // Decided as if the order were PENDING (the common case); the
        // statement's WHERE makes sure it still is.
        let change = Change::Verdict(event.change.clone());
        let Decision::Move { status, reason } = lifecycle::decide(OrderStatus::Pending, &change)
        else {
            return Ok(None);
        };
        let applied = status.as_str().to_lowercase();
        let moved = self
            .verdicts
            .apply(verdicts::VerdictMove {
                order_id: event.order_id.as_uuid(),
                status: status.as_str(),
                reason: reason.as_str().to_owned(),
                updated_at: now_micros().fixed_offset(),
                consumer: consumer.to_owned(),
                message_id: message_id.to_owned(),
                subject: subject.to_owned(),
                outcome: format!("applied: {applied}"),
                delivery: *delivery,
            })
            .await;
        match moved {
            Ok(true) => Ok(Some(StatusOutcome::Applied(applied))),
            Ok(false) => Ok(None),
            Err(err)
                if matches!(
                    err.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }
}

async fn status_apply_in_txn(
    txn: &DatabaseTransaction,
    event: &StatusEvent,
) -> Result<StatusOutcome, StoreError> {
    let order = match order_get_in_txn(txn, event.order_id, true).await {
        Ok(order) => order,
        Err(StoreError::OrderNotFound(_)) => {
            return Ok(StatusOutcome::Ignored(format!(
                "no order {}",
                event.order_id
            )));
        }
        Err(err) => return Err(err),
    };
    let (status, reason) =
        match lifecycle::decide(order.status, &Change::Verdict(event.change.clone())) {
            Decision::Move { status, reason } => (status, reason),
            Decision::Note(what) => return Ok(StatusOutcome::Applied(what)),
            Decision::Ignore(why) => return Ok(StatusOutcome::Ignored(why)),
            Decision::Refuse => {
                return Ok(StatusOutcome::Ignored(format!(
                    "order is {}",
                    order.status.as_str().to_lowercase()
                )));
            }
        };
    orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status.as_str()))
        .col_expr(orders::Column::StatusReason, Expr::value(reason))
        .col_expr(
            orders::Column::UpdatedAt,
            Expr::value(now_micros().fixed_offset()),
        )
        .filter(orders::Column::Id.eq(event.order_id.as_uuid()))
        .exec(txn)
        .await?;
    Ok(StatusOutcome::Applied(status.as_str().to_lowercase()))
}

/// Reads an order, locking its row for update when `for_update`.
async fn order_get_in_txn<C: ConnectionTrait>(
    conn: &C,
    id: OrderId,
    for_update: bool,
) -> Result<Order, StoreError> {
    let mut select = orders::Entity::find_by_id(id.as_uuid());
    if for_update {
        select = select.lock_exclusive();
    }
    let model = select
        .one(conn)
        .await?
        .ok_or(StoreError::OrderNotFound(id))?;
    let mut lines = lines_of(conn, [model.id]).await?;
    let order_lines = lines.remove(&model.id).unwrap_or_default();
    rows::order_from_rows(model, order_lines)
}

/// The lines of each order in `ids`, in line order.
async fn lines_of<C: ConnectionTrait>(
    conn: &C,
    ids: impl IntoIterator<Item = uuid::Uuid>,
) -> Result<HashMap<uuid::Uuid, Vec<order_lines::Model>>, StoreError> {
    let ids: Vec<uuid::Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let models = order_lines::Entity::find()
        .from_raw_sql(rows::lines_statement(ids))
        .all(conn)
        .await?;
    let mut by_order: HashMap<uuid::Uuid, Vec<order_lines::Model>> = HashMap::new();
    for model in models {
        by_order.entry(model.order_id).or_default().push(model);
    }
    Ok(by_order)
}

/// Now, at the database's precision (microseconds), so a returned order
/// equals the stored one.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
