//! The processor's database: its record of each order, error histories,
//! the audit trail, the inbox and its outbox. It decides nothing: the
//! payment machine (`ordo_lifecycle::payment::next`) decides, and the store
//! writes what it decided.
//!
//! Every write of a record compares and bumps its version, so a decision
//! made on a record that changed since it was read is not written: the
//! caller reads again and decides again. Settling a message is ONE
//! statement — the record moved, then the inbox row keyed by `Nats-Msg-Id`,
//! then the verdict into the outbox, each only if the one before happened
//! — so a message has its effect once or not at all, and a copy of it
//! (whose inbox row conflicts) changes nothing. Error histories are
//! appended with the failed attempt's record change, in a transaction of
//! their own, since the attempt's work is not committed.
//!
//! The common path costs two round trips: one query before the payment
//! call ([`ProcessingStore::message_lookup`]: inbox and record together) and
//! the settling statement after it. With batching on, lookups that arrive
//! together are one query, and record writes and settlements that arrive
//! together share a transaction ([`ordo_inbox::settle`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ordo_inbox::settle::{Settlement, Write};
use ordo_lifecycle::payment::{Outcome, Record, Stage, Verdict};
use ordo_outbox::{Nudger, OutboxEvent, OutboxRow, PartitionCount};
use ordo_service_kit::group_commit::{BatchCounts, GroupCommit, GroupCommitConfig, WriteBatch};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, SqlErr, Statement,
    TransactionTrait, Value,
};
use uuid::Uuid;

use crate::events;
use crate::processing::{AuditEntry, ErrorEntry, Failure, ProcessingRecord};

/// This consumer's name in the inbox.
pub const INBOX_CONSUMER: &str = "processor";

/// The sweep of failed attempts older than `ERROR_HISTORY_RETENTION` whose
/// order's payment is settled (an open one, or one whose message waits as
/// a dead letter, keeps its history).
pub const ERROR_HISTORY_RETENTION: ordo_inbox::RetentionJob = ordo_inbox::RetentionJob {
    name: "error-history-retention",
    rows: "error history entries",
    delete_batch_sql: "DELETE FROM processing_errors WHERE (message_id, attempt) IN ( \
       SELECT e.message_id, e.attempt FROM processing_errors e \
       WHERE e.occurred_at < now() - $1 * interval '1 millisecond' \
         AND NOT EXISTS (SELECT 1 FROM order_processing p WHERE p.order_id = e.order_id \
               AND p.state NOT IN ('confirmed', 'rejected', 'cancelled', 'refunded')) \
       ORDER BY e.occurred_at LIMIT $2 FOR UPDATE OF e SKIP LOCKED)",
};

/// The sweep of deferral counts older than `ERROR_HISTORY_RETENTION`
/// whose order is settled (or was never recorded).
pub const DEFERRAL_RETENTION: ordo_inbox::RetentionJob = ordo_inbox::RetentionJob {
    name: "deferral-retention",
    rows: "deferral counts",
    delete_batch_sql: "DELETE FROM processing_deferrals WHERE order_id IN ( \
       SELECT d.order_id FROM processing_deferrals d \
       WHERE d.last_at < now() - $1 * interval '1 millisecond' \
         AND NOT EXISTS (SELECT 1 FROM order_processing p WHERE p.order_id = d.order_id \
               AND p.state NOT IN ('confirmed', 'rejected', 'cancelled', 'refunded')) \
       ORDER BY d.last_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED)",
};

/// Which message is being settled.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageRef<'a> {
    /// Its `Nats-Msg-Id`: the inbox key.
    pub message_id: &'a str,
    pub subject: &'a str,
    /// Its sequence in the stream and when the stream stored it, kept with
    /// its inbox row for the order's trail.
    pub stream_sequence: u64,
    pub published_at: Option<DateTime<Utc>>,
}

impl MessageRef<'_> {
    fn delivery(&self, order_id: Uuid) -> ordo_inbox::Delivery {
        ordo_inbox::Delivery {
            order_id: Some(order_id),
            stream_sequence: self.stream_sequence,
            published_at: self.published_at,
        }
    }
}

/// An order's record with its error history and audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderHistory {
    pub record: Option<ProcessingRecord>,
    pub errors: Vec<ErrorEntry>,
    pub audit: Vec<AuditEntry>,
}

/// An order's deferrals: payment calls the open breaker refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferrals {
    pub count: u32,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub last_reason: String,
}

/// Which order, and the request it stems from.
#[derive(Debug, Clone, Copy)]
pub struct OrderRef<'a> {
    pub order_id: Uuid,
    pub correlation_id: &'a str,
}

/// What settling a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The effect (or the reason for none) is committed with the inbox row.
    Applied(String),
    Ignored(String),
    /// The inbox had the message: nothing was done.
    Duplicate,
}

/// Where handling a message starts: has it been handled, and what the
/// processor knows of its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub seen: bool,
    pub record: Option<ProcessingRecord>,
}

impl Lookup {
    /// The record as the machine sees it (a new one when there is none).
    pub fn machine(&self) -> Record {
        self.record
            .as_ref()
            .map_or_else(Record::new, ProcessingRecord::machine)
    }

    /// The version a write must find; `None` when there is no record yet.
    pub fn version(&self) -> Option<i64> {
        self.record.as_ref().map(|record| record.version)
    }
}

/// A record change to write if the record is still at `expected`.
#[derive(Debug, Clone, Copy)]
pub struct RecordWrite<'a> {
    pub order: OrderRef<'a>,
    /// The version read; `None` when there was no record.
    pub expected: Option<i64>,
    pub record: &'a Record,
}

/// The processor's store.
#[derive(Debug, Clone)]
pub struct ProcessingStore {
    db: DatabaseConnection,
    partitions: PartitionCount,
    nudger: Option<Nudger>,
    /// Where record writes and settlements go: many to a transaction when
    /// they arrive together (batching off unless configured).
    settlement: Settlement,
    /// Lookups that arrive together, read in one query (with batching on).
    lookups: Option<GroupCommit<LookupKey, Result<Lookup, DbErr>>>,
}

/// What a lookup is about: a message id and its order.
type LookupKey = (String, Uuid);

impl ProcessingStore {
    pub fn new(db: DatabaseConnection, partitions: PartitionCount, nudger: Option<Nudger>) -> Self {
        let settlement = Settlement::new(db.clone(), GroupCommitConfig::OFF);
        Self {
            db,
            partitions,
            nudger,
            settlement,
            lookups: None,
        }
    }

    /// The same store settling messages by group commit (`config`), and
    /// reading the lookups that arrive together in one query.
    pub fn with_settlement(self, config: GroupCommitConfig) -> Self {
        let lookups = config.is_batching().then(|| {
            let db = self.db.clone();
            let read: WriteBatch<LookupKey, Result<Lookup, DbErr>> = Arc::new(move |keys| {
                let db = db.clone();
                Box::pin(async move { lookups_together(&db, keys).await })
            });
            GroupCommit::start(config, read)
        });
        Self {
            settlement: Settlement::new(self.db.clone(), config),
            lookups,
            ..self
        }
    }

    /// Batched settlement's counts (transactions, statements in them);
    /// none with batching off.
    pub fn settlement_counts(&self) -> Option<Arc<BatchCounts>> {
        self.settlement.counts()
    }

    /// Batched lookups' counts (queries, lookups in them); none with
    /// batching off.
    pub fn lookup_counts(&self) -> Option<Arc<BatchCounts>> {
        self.lookups.as_ref().map(GroupCommit::counts)
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

    /// The record of `order_id`, if the processor has one.
    pub async fn processing_get(&self, order_id: Uuid) -> Result<Option<ProcessingRecord>, DbErr> {
        let row = self
            .db
            .query_one_raw(statement(
                &format!("SELECT {RECORD_COLUMNS} FROM order_processing WHERE order_id = $1"),
                [order_id.into()],
            ))
            .await?;
        row.map(|row| record_from_row(&row)).transpose()
    }

    /// Whether the inbox already holds `message_id`, and the record of
    /// `order_id` — what handling a message starts from, in one query
    /// (shared with the lookups that arrive beside it, batching on).
    pub async fn message_lookup(&self, message_id: &str, order_id: Uuid) -> Result<Lookup, DbErr> {
        match &self.lookups {
            Some(lookups) => lookups
                .submit((message_id.to_owned(), order_id))
                .await
                .map_err(|stopped| DbErr::Custom(stopped.to_string()))?,
            None => lookup_one(&self.db, message_id, order_id).await,
        }
    }

    /// Writes a record change decided before a payment call (the intent
    /// must outlive the message). `false` when the record moved meanwhile.
    pub async fn record_save(&self, write: RecordWrite<'_>) -> Result<bool, DbErr> {
        let (sql, values) = record_write_sql(&write, 0);
        let written = self
            .settlement
            .run(Write::RowsAffected(statement(&sql, values)))
            .await?;
        Ok(written == 1)
    }

    /// Settles a message in one statement: the record written (if still at
    /// the version read), the inbox row, the verdict's event. `None` when
    /// the record moved meanwhile or a copy of the message got there first:
    /// read again and decide again.
    pub async fn message_settle(
        &self,
        message: MessageRef<'_>,
        write: RecordWrite<'_>,
        verdict: Option<&Verdict>,
        outcome: &Outcome,
    ) -> Result<Option<Settled>, DbErr> {
        let (moved, mut values) = record_write_sql(&write, 0);
        let inbox_at = values.len();
        values.extend([
            INBOX_CONSUMER.into(),
            message.message_id.into(),
            message.subject.into(),
            inbox_outcome(outcome).into(),
        ]);
        values.extend(message.delivery(write.order.order_id).values());
        let event = verdict.map(|verdict| verdict_event(write.order, verdict));
        let mut sql = format!(
            "WITH moved AS ({moved}), \
             recorded AS (INSERT INTO inbox \
               (consumer, message_id, subject, outcome, order_id, stream_sequence, published_at) \
               SELECT ${}, ${}, ${}, ${}, ${}, ${}, ${} FROM moved RETURNING message_id) ",
            inbox_at + 1,
            inbox_at + 2,
            inbox_at + 3,
            inbox_at + 4,
            inbox_at + 5,
            inbox_at + 6,
            inbox_at + 7,
        );
        let partition = match &event {
            Some(event) => {
                let row = OutboxRow::of(self.partitions, event);
                let partition = row.partition;
                sql.push_str(&format!(
                    "INSERT INTO outbox ({columns}) SELECT {placeholders} FROM recorded",
                    columns = OutboxRow::COLUMNS,
                    placeholders = row.placeholders(values.len() + 1),
                ));
                values.extend(row.into_values());
                Some(partition)
            }
            None => {
                sql.push_str("SELECT count(*) FROM recorded");
                None
            }
        };
        let settled = match outcome {
            Outcome::Applied(what) => Settled::Applied(what.clone()),
            Outcome::Ignored(why) => Settled::Ignored(why.clone()),
        };
        let write = match partition {
            Some(_) => Write::RowsAffected(statement(&sql, values)),
            None => Write::Count(statement(&sql, values)),
        };
        let done = self.settlement.run(write).await.map(|rows| rows == 1);
        match done {
            Ok(true) => {
                if let Some(partition) = partition {
                    self.nudge(partition);
                }
                Ok(Some(settled))
            }
            Ok(false) => Ok(None),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Writes a record change with no message to settle (a purge): the
    /// record (if still at the version read), the verdict's event, and the
    /// audit entry, in one transaction. `false` when the record moved.
    pub async fn record_settle_audited(
        &self,
        write: RecordWrite<'_>,
        verdict: Option<&Verdict>,
        audit: &AuditEntry,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let (sql, values) = record_write_sql(&write, 0);
        if txn
            .execute_raw(statement(&sql, values))
            .await?
            .rows_affected()
            != 1
        {
            txn.rollback().await?;
            return Ok(false);
        }
        let partition = match verdict {
            Some(verdict) => Some(
                ordo_outbox::outbox_insert_in_txn(
                    &txn,
                    self.partitions,
                    &verdict_event(write.order, verdict),
                )
                .await?,
            ),
            None => None,
        };
        audit_insert(&txn, audit).await?;
        txn.commit().await?;
        if let Some(partition) = partition {
            self.nudge(partition);
        }
        Ok(true)
    }

    /// Appends one entry to the message's error history and writes the
    /// record change the failure makes (`write`, decided on the version
    /// read, with one more attempt counted; none for a message about no
    /// order); returns the entry's attempt number (1 for the first), or
    /// `None` when the record moved meanwhile.
    pub async fn attempt_record(
        &self,
        message: MessageRef<'_>,
        correlation_id: &str,
        write: Option<RecordWrite<'_>>,
        failure: &Failure,
        instance: &str,
    ) -> Result<Option<u32>, DbErr> {
        let txn = self.db.begin().await?;
        if let Some(write) = write {
            let (sql, values) = record_write_sql(&write, 1);
            if txn
                .execute_raw(statement(&sql, values))
                .await?
                .rows_affected()
                != 1
            {
                txn.rollback().await?;
                return Ok(None);
            }
        }
        let row = txn
            .query_one_raw(statement(
                "INSERT INTO processing_errors (message_id, attempt, order_id, subject, code, message, instance, correlation_id) \
                 SELECT $1, coalesce(max(attempt), 0) + 1, $2, $3, $4, $5, $6, $7 \
                 FROM processing_errors WHERE message_id = $1 \
                 RETURNING attempt",
                [
                    message.message_id.into(),
                    write.map(|write| write.order.order_id).into(),
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
        txn.commit().await?;
        Ok(Some(u32::try_from(attempt).unwrap_or_default()))
    }

    /// Notes a deferral: the order's status reason set (if it has a
    /// record), and one more deferral counted with its time and reason;
    /// nothing decided.
    pub async fn processing_deferred(&self, order_id: Uuid, reason: &str) -> Result<(), DbErr> {
        self.db
            .execute_raw(statement(
                "WITH noted AS (UPDATE order_processing SET status_reason = $2, updated_at = now() \
                   WHERE order_id = $1) \
                 INSERT INTO processing_deferrals (order_id, last_reason) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO UPDATE SET deferrals = processing_deferrals.deferrals + 1, \
                   last_at = now(), last_reason = EXCLUDED.last_reason",
                [order_id.into(), reason.into()],
            ))
            .await?;
        Ok(())
    }

    /// How often the order's messages were deferred, when, and why last.
    pub async fn deferrals_of(&self, order_id: Uuid) -> Result<Option<Deferrals>, DbErr> {
        let row = self
            .db
            .query_one_raw(statement(
                "SELECT deferrals, first_at, last_at, last_reason FROM processing_deferrals \
                 WHERE order_id = $1",
                [order_id.into()],
            ))
            .await?;
        row.map(|row| {
            Ok(Deferrals {
                count: u32::try_from(row.try_get::<i32>("", "deferrals")?).unwrap_or_default(),
                first_at: row.try_get("", "first_at")?,
                last_at: row.try_get("", "last_at")?,
                last_reason: row.try_get("", "last_reason")?,
            })
        })
        .transpose()
    }

    /// Records an operator's decision on a dead letter that settled nothing
    /// in the record (a redrive, a purge with nothing to settle).
    pub async fn audit_append(&self, audit: &AuditEntry) -> Result<(), DbErr> {
        audit_insert(&self.db, audit).await
    }

    /// What operators did about `order_id`, oldest first.
    pub async fn audit_for_order(&self, order_id: Uuid) -> Result<Vec<AuditEntry>, DbErr> {
        let rows = self
            .db
            .query_all_raw(statement(
                "SELECT order_id, dead_letter_id, message_id, subject, action, actor, reason, outcome, occurred_at \
                 FROM processing_audit WHERE order_id = $1 ORDER BY occurred_at, id",
                [order_id.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    order_id: row.try_get("", "order_id")?,
                    dead_letter_id: u64::try_from(row.try_get::<i64>("", "dead_letter_id")?)
                        .unwrap_or_default(),
                    message_id: row.try_get("", "message_id")?,
                    subject: row.try_get("", "subject")?,
                    action: row.try_get("", "action")?,
                    actor: row.try_get("", "actor")?,
                    reason: row.try_get("", "reason")?,
                    outcome: row.try_get("", "outcome")?,
                    occurred_at: row.try_get("", "occurred_at")?,
                })
            })
            .collect()
    }

    /// What the processor knows of `order_id`: its record, every failed
    /// attempt and every operator's decision (the three read at once).
    pub async fn order_history(&self, order_id: Uuid) -> Result<OrderHistory, DbErr> {
        let (record, errors, audit) = futures::try_join!(
            self.processing_get(order_id),
            self.errors_for_order(order_id),
            self.audit_for_order(order_id),
        )?;
        Ok(OrderHistory {
            record,
            errors,
            audit,
        })
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
}

const RECORD_COLUMNS: &str = "order_id, state, attempts, payment_id, refund_id, status_reason, correlation_id, updated_at, version";

/// The statement writing `write` (compare and bump the version; insert when
/// there was no record), counting `attempts` more failed attempts, and its
/// values ($1…). It returns the order id when it wrote.
fn record_write_sql(write: &RecordWrite<'_>, attempts: i32) -> (String, Vec<Value>) {
    let record = write.record;
    let mut values: Vec<Value> = vec![
        write.order.order_id.into(),
        record.stage.as_str().into(),
        record.reason.as_str().into(),
        record.payment_id.clone().into(),
        record.refund_id.clone().into(),
        attempts.into(),
    ];
    let sql = match write.expected {
        None => {
            values.push(write.order.correlation_id.into());
            "INSERT INTO order_processing (order_id, state, status_reason, payment_id, refund_id, attempts, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING RETURNING order_id"
        }
        Some(version) => {
            values.push(version.into());
            "UPDATE order_processing SET state = $2, status_reason = $3, payment_id = $4, refund_id = $5, \
               attempts = attempts + $6, version = version + 1, updated_at = now() \
             WHERE order_id = $1 AND version = $7 RETURNING order_id"
        }
    };
    (sql.to_owned(), values)
}

/// The event announcing `verdict`.
fn verdict_event(order: OrderRef<'_>, verdict: &Verdict) -> OutboxEvent {
    match verdict {
        Verdict::Confirmed { payment_id } => {
            events::order_confirmed(order.order_id, payment_id, order.correlation_id)
        }
        Verdict::Rejected { reason } => {
            events::order_rejected(order.order_id, reason, order.correlation_id)
        }
        Verdict::Refunded {
            payment_id,
            refund_id,
        } => events::order_refunded(order.order_id, payment_id, refund_id, order.correlation_id),
    }
}

/// What the inbox row says was done.
fn inbox_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied(what) => format!("applied: {what}"),
        Outcome::Ignored(why) => format!("ignored: {why}"),
    }
}

async fn audit_insert<C: ConnectionTrait>(conn: &C, audit: &AuditEntry) -> Result<(), DbErr> {
    conn.execute_raw(statement(
        "INSERT INTO processing_audit (order_id, dead_letter_id, message_id, subject, action, actor, reason, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            audit.order_id.into(),
            i64::try_from(audit.dead_letter_id).unwrap_or(i64::MAX).into(),
            audit.message_id.as_str().into(),
            audit.subject.as_str().into(),
            audit.action.as_str().into(),
            audit.actor.as_str().into(),
            audit.reason.as_str().into(),
            audit.outcome.as_str().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One lookup, in a query of its own.
async fn lookup_one(
    db: &DatabaseConnection,
    message_id: &str,
    order_id: Uuid,
) -> Result<Lookup, DbErr> {
    let row = db
        .query_one_raw(statement(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2) AS seen, \
               p.order_id, p.state, p.attempts, p.payment_id, p.refund_id, p.status_reason, \
               p.correlation_id, p.updated_at, p.version \
             FROM (SELECT 1) AS one LEFT JOIN order_processing p ON p.order_id = $3",
            [INBOX_CONSUMER.into(), message_id.into(), order_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("message lookup returned no row".to_owned()))?;
    lookup_from_row(&row)
}

/// The lookups of a batch, one row each in the batch's order. Each lookup
/// is its own index probe (the `LATERAL` subqueries, which PostgreSQL can
/// neither flatten nor hash): written as a join, the plan cached while the
/// tables were small — a hash of the whole inbox and of every record —
/// stays in use as they grow, and each batch read both tables whole.
const LOOKUPS_TOGETHER_SQL: &str = "\
SELECT q.n, i.seen, p.order_id, p.state, p.attempts, p.payment_id, p.refund_id, p.status_reason,
       p.correlation_id, p.updated_at, p.version
FROM unnest($2::text[], $3::uuid[]) WITH ORDINALITY AS q (message_id, order_id, n)
CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = q.message_id) AS seen
                    OFFSET 0) AS i
LEFT JOIN LATERAL (SELECT * FROM order_processing WHERE order_id = q.order_id LIMIT 1) AS p ON true
ORDER BY q.n";

/// Lookups that arrived together, in one query: each (message, order) of
/// `keys` with its inbox check and its record, in `keys`' order. If the
/// query fails, each is looked up alone (a read: nothing to undo).
async fn lookups_together(
    db: &DatabaseConnection,
    keys: Vec<LookupKey>,
) -> Vec<Result<Lookup, DbErr>> {
    if keys.len() > 1 {
        let (message_ids, order_ids): (Vec<String>, Vec<Uuid>) = keys.iter().cloned().unzip();
        let rows = db
            .query_all_raw(statement(
                LOOKUPS_TOGETHER_SQL,
                [
                    INBOX_CONSUMER.into(),
                    Value::from(message_ids),
                    Value::from(order_ids),
                ],
            ))
            .await;
        match rows {
            Ok(rows) if rows.len() == keys.len() => {
                return rows.iter().map(lookup_from_row).collect();
            }
            Ok(rows) => tracing::warn!(
                rows = rows.len(),
                lookups = keys.len(),
                "a batched lookup returned a row count of its own; looking up each alone"
            ),
            Err(err) => {
                tracing::debug!(error = %err, "a batched lookup failed; looking up each alone")
            }
        }
    }
    let mut lookups = Vec::with_capacity(keys.len());
    for (message_id, order_id) in &keys {
        lookups.push(lookup_one(db, message_id, *order_id).await);
    }
    lookups
}

fn lookup_from_row(row: &QueryResult) -> Result<Lookup, DbErr> {
    let record = match row.try_get::<Option<Uuid>>("", "order_id")? {
        Some(_) => Some(record_from_row(row)?),
        None => None,
    };
    Ok(Lookup {
        seen: row.try_get("", "seen")?,
        record,
    })
}

fn record_from_row(row: &QueryResult) -> Result<ProcessingRecord, DbErr> {
    let raw: String = row.try_get("", "state")?;
    Ok(ProcessingRecord {
        order_id: row.try_get("", "order_id")?,
        state: Stage::parse(&raw)
            .ok_or_else(|| DbErr::Custom(format!("unknown processing state {raw:?}")))?,
        attempts: u32::try_from(row.try_get::<i32>("", "attempts")?).unwrap_or_default(),
        payment_id: row.try_get("", "payment_id")?,
        refund_id: row.try_get("", "refund_id")?,
        status_reason: row.try_get("", "status_reason")?,
        correlation_id: row.try_get("", "correlation_id")?,
        updated_at: row.try_get("", "updated_at")?,
        version: row.try_get("", "version")?,
    })
}

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}
