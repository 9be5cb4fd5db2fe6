//! The idempotent-consumer inbox, shared by every service that consumes.
//!
//! A consumer handles a message in one transaction: its effect, plus
//! [`inbox_record_in_txn`] under `(consumer, Nats-Msg-Id)`. If the inbox
//! already holds the key, the insert does nothing, the caller rolls back and
//! acks, and the message has had exactly one effect — however often NATS
//! delivered it, and whether or not the re-publish fell inside the stream's
//! duplicate window.
//!
//! Rows cannot be kept forever: [`InboxRetention`] deletes the ones older
//! than a horizon (which must outlast the duplicate window, or a late
//! duplicate would find no row) in small batches, run by one replica at a
//! time under a [`lease`] so replicas neither double the work nor deadlock.
#![forbid(unsafe_code)]

pub mod lease;
mod retention;

pub use retention::{InboxRetention, RetentionConfig, Sweep};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// Records `message_id` as handled by `consumer`, with what was done.
/// `Ok(false)` means the inbox already held it: a duplicate, to be rolled
/// back and acked.
pub async fn inbox_record_in_txn(
    txn: &impl ConnectionTrait,
    consumer: &str,
    message_id: &str,
    subject: &str,
    outcome: &str,
) -> Result<bool, DbErr> {
    let inserted = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO inbox (consumer, message_id, subject, outcome) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            [
                consumer.into(),
                message_id.into(),
                subject.into(),
                outcome.into(),
            ],
        ))
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// Whether `consumer` has already handled `message_id` (a cheap check
/// before work that would be wasted; the insert above is what decides).
pub async fn inbox_contains(
    db: &impl ConnectionTrait,
    consumer: &str,
    message_id: &str,
) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS one FROM inbox WHERE consumer = $1 AND message_id = $2",
            [consumer.into(), message_id.into()],
        ))
        .await?;
    Ok(row.is_some())
}
