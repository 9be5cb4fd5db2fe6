//! The processor's database: its record of each order, error histories,
//! the inbox and its outbox. Every settlement is ONE transaction — lock the
//! order's record, decide, update it, write the next event into the outbox,
//! record the message in the inbox — so a message has its effect once or
//! not at all. Error histories are appended in transactions of their own,
//! since the attempt they describe is rolled back.
//!
//! Round trips are what this machine's PostgreSQL pays for most, so the
//! common path is short: one query before the payment call (inbox and
//! record together, [`ProcessingStore::message_lookup`]) and one statement
//! after it (record moved, inbox row and event in data-modifying CTEs,
//! each conditional on the one before). Anything else — a record in
//! another state, a concurrent copy of the message — falls back to the
//! locked transaction, which decides every case.

use chrono::{DateTime, Utc};
use ordo_inbox::inbox_record_in_txn;
use ordo_outbox::{Nudger, OutboxEvent, OutboxRow, PartitionCount, outbox_insert_in_txn};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    SqlErr, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use crate::events;
use crate::messages::PlacedOrder;
use crate::payments::Authorization;
use crate::processing::{ErrorEntry, Failure, ProcessingRecord, ProcessingState};

/// This consumer's name in the inbox.
pub const INBOX_CONSUMER: &str = "processor";

/// Which message is being settled.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    /// Its `Nats-Msg-Id`: the inbox key.
    pub message_id: &'a str,
    pub subject: &'a str,
}

/// What settling a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The effect (or the reason for none) is committed with the inbox row.
    Applied(String),
    Ignored(String),
    /// The inbox had the message: nothing was done.
    Duplicate,
    /// The order was cancelled while its payment was authorized: the
    /// payment is recorded and must now be refunded; the message stays open.
    RefundDue {
        payment_id: String,
    },
    /// The record moved under us (another message about the order won the
    /// race): nothing was done; handle the message again.
    Raced,
}

/// Where handling a message starts: has it been handled, and what the
/// processor knows of its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub seen: bool,
    pub record: Option<ProcessingRecord>,
}

/// What a payment's answer makes of an order awaiting it.
#[derive(Debug, Clone)]
struct Verdict {
    state: ProcessingState,
    reason: String,
    payment_id: Option<String>,
    settled: Settled,
    event: OutboxEvent,
}

impl Verdict {
    fn of(order: &PlacedOrder, authorization: &Authorization) -> Self {
        match authorization {
            Authorization::Approved { payment_id } => Self {
                state: ProcessingState::Confirmed,
                reason: String::new(),
                payment_id: Some(payment_id.clone()),
                settled: Settled::Applied(format!("confirmed, payment {payment_id}")),
                event: events::order_confirmed(order.order_id, payment_id, &order.correlation_id),
            },
            Authorization::Declined { reason } => Self {
                state: ProcessingState::Rejected,
                reason: reason.clone(),
                payment_id: None,
                settled: Settled::Applied(format!("rejected: {reason}")),
                event: events::order_rejected(order.order_id, reason, &order.correlation_id),
            },
        }
    }

    fn inbox_outcome(&self) -> String {
        inbox_outcome(&self.settled)
    }
}

/// What the inbox row says was done.
fn inbox_outcome(settled: &Settled) -> String {
    match settled {
        Settled::Applied(what) => format!("applied: {what}"),
        Settled::Ignored(why) => format!("ignored: {why}"),
        _ => String::new(),
    }
}

/// The processor's store.
#[derive(Debug, Clone)]
pub struct ProcessingStore {
    db: DatabaseConnection,
    partitions: PartitionCount,
    nudger: Option<Nudger>,
}

impl ProcessingStore {
    pub fn new(db: DatabaseConnection, partitions: PartitionCount, nudger: Option<Nudger>) -> Self {
        Self {
            db,
            partitions,
            nudger,
        }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Wakes the local relay of `partition` after a commit wrote into it.
    fn nudge(&self, partition: i32) {
        if let Some(nudger) = &self.nudger {
            nudger.nudge(partition);
        }
    }

    /// The record of `order_id`, if the processor has seen it.
    pub async fn processing_get(&self, order_id: Uuid) -> Result<Option<ProcessingRecord>, DbErr> {
        let row = self
            .db
            .query_one_raw(statement(
                "SELECT order_id, state, attempts, payment_id, refund_id, status_reason, correlation_id, updated_at \
                 FROM order_processing WHERE order_id = $1",
                [order_id.into()],
            ))
            .await?;
        row.map(|row| record_from_row(&row)).transpose()
    }

    /// Whether the inbox already holds `message_id`, and the record of
    /// `order_id` — what handling a message starts from, in one query.
    pub async fn message_lookup(&self, message_id: &str, order_id: Uuid) -> Result<Lookup, DbErr> {
        let row = self
            .db
            .query_one_raw(statement(
                "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2) AS seen, \
                   p.order_id, p.state, p.attempts, p.payment_id, p.refund_id, p.status_reason, p.correlation_id, p.updated_at \
                 FROM (SELECT 1) AS one LEFT JOIN order_processing p ON p.order_id = $3",
                [INBOX_CONSUMER.into(), message_id.into(), order_id.into()],
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("message lookup returned no row".to_owned()))?;
        let record = match row.try_get::<Option<Uuid>>("", "order_id")? {
            Some(_) => Some(record_from_row(&row)?),
            None => None,
        };
        Ok(Lookup {
            seen: row.try_get("", "seen")?,
            record,
        })
    }

    /// Records the message as handled with no effect, for `why` (one
    /// statement: the inbox row is all there is to write).
    pub async fn message_ignore(
        &self,
        message: MessageRef<'_>,
        why: &str,
    ) -> Result<Settled, DbErr> {
        let recorded = inbox_record_in_txn(
            &self.db,
            INBOX_CONSUMER,
            message.message_id,
            message.subject,
            &format!("ignored: {why}"),
        )
        .await?;
        Ok(if recorded {
            Settled::Ignored(why.to_owned())
        } else {
            Settled::Duplicate
        })
    }

    /// Settles an `OrderPlaced` whose payment the provider answered.
    pub async fn placed_settle(
        &self,
        message: MessageRef<'_>,
        order: &PlacedOrder,
        authorization: &Authorization,
    ) -> Result<Settled, DbErr> {
        let verdict = Verdict::of(order, authorization);
        if let Some(settled) = self.verdict_apply_at_once(message, order, &verdict).await? {
            return Ok(settled);
        }
        // The record was not awaiting payment (or the statement met a
        // concurrent copy of the message): decide under the record's lock.
        let txn = self.db.begin().await?;
        let state = lock_or_create(&txn, order.order_id, &order.correlation_id).await?;
        let (settled, event) = match (state, authorization) {
            (ProcessingState::Retrying | ProcessingState::DeadLettered, _) => {
                update(
                    &txn,
                    order.order_id,
                    verdict.state,
                    &verdict.reason,
                    verdict.payment_id.as_deref(),
                    None,
                )
                .await?;
                (verdict.settled, Some(verdict.event))
            }
            (ProcessingState::Cancelled, Authorization::Approved { payment_id }) => {
                update(
                    &txn,
                    order.order_id,
                    ProcessingState::RefundDue,
                    "cancelled while its payment was authorized; refunding",
                    Some(payment_id.as_str()),
                    None,
                )
                .await?;
                txn.commit().await?;
                return Ok(Settled::RefundDue {
                    payment_id: payment_id.clone(),
                });
            }
            (ProcessingState::RefundDue, _) => {
                let payment_id = payment_of(&txn, order.order_id).await?;
                txn.rollback().await?;
                return Ok(Settled::RefundDue { payment_id });
            }
            (settled, _) => (
                Settled::Ignored(format!("order already {}", settled.as_str())),
                None,
            ),
        };
        self.finish(txn, message, settled, event).await
    }

    /// The common case in one statement: the record awaits payment (or does
    /// not exist yet), so move it to the verdict, record the message in the
    /// inbox and write the event — each only if the one before happened.
    /// `None` when the record was elsewhere, or a concurrent copy of the
    /// message holds the inbox key (the statement then fails whole): the
    /// caller decides under a lock instead.
    async fn verdict_apply_at_once(
        &self,
        message: MessageRef<'_>,
        order: &PlacedOrder,
        verdict: &Verdict,
    ) -> Result<Option<Settled>, DbErr> {
        let row = OutboxRow::of(self.partitions, &verdict.event);
        let partition = row.partition;
        let sql = format!(
            "WITH moved AS ( \
               INSERT INTO order_processing (order_id, state, status_reason, payment_id, correlation_id) \
               VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, \
                 status_reason = EXCLUDED.status_reason, \
                 payment_id = coalesce(EXCLUDED.payment_id, order_processing.payment_id), updated_at = now() \
               WHERE order_processing.state IN ('retrying', 'dead_lettered') \
               RETURNING order_id), \
             recorded AS ( \
               INSERT INTO inbox (consumer, message_id, subject, outcome) \
               SELECT $6, $7, $8, $9 FROM moved RETURNING message_id) \
             INSERT INTO outbox ({columns}) SELECT {placeholders} FROM recorded",
            columns = OutboxRow::COLUMNS,
            placeholders = row.placeholders(10),
        );
        let mut values: Vec<Value> = vec![
            order.order_id.into(),
            verdict.state.as_str().into(),
            verdict.reason.as_str().into(),
            verdict.payment_id.clone().into(),
            order.correlation_id.as_str().into(),
            INBOX_CONSUMER.into(),
            message.message_id.into(),
            message.subject.into(),
            verdict.inbox_outcome().into(),
        ];
        values.extend(row.into_values());
        match self.db.execute_raw(statement(&sql, values)).await {
            Ok(done) if done.rows_affected() == 1 => {
                self.nudge(partition);
                Ok(Some(verdict.settled.clone()))
            }
            Ok(_) => Ok(None),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Settles a refund of a cancelled order: refunded, once.
    pub async fn refund_settle(
        &self,
        message: MessageRef<'_>,
        order_id: Uuid,
        correlation_id: &str,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Settled, DbErr> {
        let txn = self.db.begin().await?;
        let state = lock_or_create(&txn, order_id, correlation_id).await?;
        let (settled, event) = match state {
            ProcessingState::Confirmed | ProcessingState::RefundDue => {
                update(
                    &txn,
                    order_id,
                    ProcessingState::Refunded,
                    "cancelled; payment refunded",
                    Some(payment_id),
                    Some(refund_id),
                )
                .await?;
                (
                    Settled::Applied(format!("refunded, refund {refund_id}")),
                    Some(events::order_refunded(
                        order_id,
                        payment_id,
                        refund_id,
                        correlation_id,
                    )),
                )
            }
            ProcessingState::Refunded => {
                (Settled::Ignored("order already refunded".to_owned()), None)
            }
            _ => {
                txn.rollback().await?;
                return Ok(Settled::Raced);
            }
        };
        self.finish(txn, message, settled, event).await
    }

    /// Settles the cancellation of an order that holds no payment.
    pub async fn cancel_unpaid(
        &self,
        message: MessageRef<'_>,
        order_id: Uuid,
        correlation_id: &str,
    ) -> Result<Settled, DbErr> {
        let txn = self.db.begin().await?;
        let state = lock_or_create(&txn, order_id, correlation_id).await?;
        match state {
            ProcessingState::Rejected | ProcessingState::DeadLettered => {
                update(
                    &txn,
                    order_id,
                    ProcessingState::Cancelled,
                    "cancelled; no payment captured",
                    None,
                    None,
                )
                .await?;
                self.finish(
                    txn,
                    message,
                    Settled::Applied("cancelled, nothing to refund".to_owned()),
                    None,
                )
                .await
            }
            _ => {
                txn.rollback().await?;
                Ok(Settled::Raced)
            }
        }
    }

    /// Appends one entry to the message's error history (and counts it on
    /// the order's record); returns its attempt number, 1 for the first.
    pub async fn error_append(
        &self,
        message: MessageRef<'_>,
        order_id: Option<Uuid>,
        correlation_id: &str,
        failure: &Failure,
        instance: &str,
    ) -> Result<u32, DbErr> {
        let txn = self.db.begin().await?;
        let row = txn
            .query_one_raw(statement(
                "INSERT INTO processing_errors (message_id, attempt, order_id, subject, code, message, instance, correlation_id) \
                 SELECT $1, coalesce(max(attempt), 0) + 1, $2, $3, $4, $5, $6, $7 \
                 FROM processing_errors WHERE message_id = $1 \
                 RETURNING attempt",
                [
                    message.message_id.into(),
                    order_id.into(),
                    message.subject.into(),
                    failure.code.into(),
                    failure.text.as_str().into(),
                    instance.into(),
                    correlation_id.into(),
                ],
            ))
            .await?;
        let attempt: i32 = row
            .ok_or_else(|| DbErr::Custom("error history insert returned nothing".to_owned()))?
            .try_get("", "attempt")?;
        if let Some(order_id) = order_id {
            txn.execute_raw(statement(
                "INSERT INTO order_processing (order_id, state, attempts, status_reason) \
                 VALUES ($1, 'retrying', 1, $2) \
                 ON CONFLICT (order_id) DO UPDATE SET attempts = order_processing.attempts + 1, \
                   status_reason = EXCLUDED.status_reason, updated_at = now()",
                [
                    order_id.into(),
                    format!("{}: {}", failure.code, failure.text).into(),
                ],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(u32::try_from(attempt).unwrap_or_default())
    }

    /// Sets the order's status reason (creating its record, RETRYING, if
    /// the processor had none), leaving state and attempts alone.
    pub async fn processing_note(&self, order_id: Uuid, reason: &str) -> Result<(), DbErr> {
        self.db
            .execute_raw(statement(
                "INSERT INTO order_processing (order_id, state, status_reason) VALUES ($1, 'retrying', $2) \
                 ON CONFLICT (order_id) DO UPDATE SET status_reason = EXCLUDED.status_reason, updated_at = now()",
                [order_id.into(), reason.into()],
            ))
            .await?;
        Ok(())
    }

    /// Notes on the order's record that a message about it was
    /// dead-lettered; an unsettled order becomes DEAD_LETTERED.
    pub async fn dead_lettered_mark(&self, order_id: Uuid, reason: &str) -> Result<(), DbErr> {
        self.db
            .execute_raw(statement(
                "INSERT INTO order_processing (order_id, state, status_reason) VALUES ($1, 'dead_lettered', $2) \
                 ON CONFLICT (order_id) DO UPDATE SET \
                   state = CASE WHEN order_processing.state = 'retrying' THEN 'dead_lettered' ELSE order_processing.state END, \
                   status_reason = EXCLUDED.status_reason, updated_at = now()",
                [order_id.into(), format!("dead-lettered: {reason}").into()],
            ))
            .await?;
        Ok(())
    }

    /// Every failed attempt at messages about `order_id`, oldest first.
    pub async fn errors_for_order(&self, order_id: Uuid) -> Result<Vec<ErrorEntry>, DbErr> {
        self.errors_where("order_id = $1", order_id.into()).await
    }

    /// The error history of one message, oldest first.
    pub async fn errors_for_message(&self, message_id: &str) -> Result<Vec<ErrorEntry>, DbErr> {
        self.errors_where("message_id = $1", message_id.into())
            .await
    }

    async fn errors_where(&self, filter: &str, value: Value) -> Result<Vec<ErrorEntry>, DbErr> {
        let rows = self
            .db
            .query_all_raw(statement(
                &format!(
                    "SELECT message_id, subject, attempt, occurred_at, code, message, instance, correlation_id \
                     FROM processing_errors WHERE {filter} ORDER BY occurred_at, message_id, attempt"
                ),
                [value],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ErrorEntry {
                    message_id: row.try_get("", "message_id")?,
                    subject: row.try_get("", "subject")?,
                    attempt: u32::try_from(row.try_get::<i32>("", "attempt")?).unwrap_or_default(),
                    occurred_at: row.try_get::<DateTime<Utc>>("", "occurred_at")?,
                    code: row.try_get("", "code")?,
                    text: row.try_get("", "message")?,
                    instance: row.try_get("", "instance")?,
                    correlation_id: row.try_get("", "correlation_id")?,
                })
            })
            .collect()
    }

    /// Records the message in the inbox, writes the event, commits, and
    /// wakes the relay; a message the inbox has seen rolls everything back.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        message: MessageRef<'_>,
        settled: Settled,
        event: Option<OutboxEvent>,
    ) -> Result<Settled, DbErr> {
        let outcome = inbox_outcome(&settled);
        if !inbox_record_in_txn(
            &txn,
            INBOX_CONSUMER,
            message.message_id,
            message.subject,
            &outcome,
        )
        .await?
        {
            txn.rollback().await?;
            return Ok(Settled::Duplicate);
        }
        let partition = match &event {
            Some(event) => Some(outbox_insert_in_txn(&txn, self.partitions, event).await?),
            None => None,
        };
        txn.commit().await?;
        if let Some(partition) = partition {
            self.nudge(partition);
        }
        Ok(settled)
    }
}

/// The order's state, its row locked for the rest of the transaction (and
/// created, RETRYING, if this is the first the processor hears of it).
async fn lock_or_create(
    txn: &DatabaseTransaction,
    order_id: Uuid,
    correlation_id: &str,
) -> Result<ProcessingState, DbErr> {
    txn.execute_raw(statement(
        "INSERT INTO order_processing (order_id, state, correlation_id) VALUES ($1, 'retrying', $2) \
         ON CONFLICT (order_id) DO NOTHING",
        [order_id.into(), correlation_id.into()],
    ))
    .await?;
    let row = txn
        .query_one_raw(statement(
            "SELECT state FROM order_processing WHERE order_id = $1 FOR UPDATE",
            [order_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("order_processing {order_id}")))?;
    parse_state(&row.try_get::<String>("", "state")?)
}

async fn payment_of(txn: &DatabaseTransaction, order_id: Uuid) -> Result<String, DbErr> {
    let row = txn
        .query_one_raw(statement(
            "SELECT coalesce(payment_id, '') AS payment_id FROM order_processing WHERE order_id = $1",
            [order_id.into()],
        ))
        .await?;
    row.map_or(Ok(String::new()), |row| row.try_get("", "payment_id"))
}

async fn update(
    txn: &DatabaseTransaction,
    order_id: Uuid,
    state: ProcessingState,
    reason: &str,
    payment_id: Option<&str>,
    refund_id: Option<&str>,
) -> Result<(), DbErr> {
    txn.execute_raw(statement(
        "UPDATE order_processing SET state = $2, status_reason = $3, \
           payment_id = coalesce($4, payment_id), refund_id = coalesce($5, refund_id), updated_at = now() \
         WHERE order_id = $1",
        [
            order_id.into(),
            state.as_str().into(),
            reason.into(),
            payment_id.map(str::to_owned).into(),
            refund_id.map(str::to_owned).into(),
        ],
    ))
    .await?;
    Ok(())
}

fn record_from_row(row: &QueryResult) -> Result<ProcessingRecord, DbErr> {
    Ok(ProcessingRecord {
        order_id: row.try_get("", "order_id")?,
        state: parse_state(&row.try_get::<String>("", "state")?)?,
        attempts: u32::try_from(row.try_get::<i32>("", "attempts")?).unwrap_or_default(),
        payment_id: row.try_get("", "payment_id")?,
        refund_id: row.try_get("", "refund_id")?,
        status_reason: row.try_get("", "status_reason")?,
        correlation_id: row.try_get("", "correlation_id")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

fn parse_state(raw: &str) -> Result<ProcessingState, DbErr> {
    ProcessingState::parse(raw)
        .ok_or_else(|| DbErr::Custom(format!("unknown processing state {raw:?}")))
}

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}
