//! The idempotent-consumer inbox, shared by every service that consumes.
//!
//! A consumer handles a message in one transaction: its effect, plus
//! [`inbox_record_in_txn`] under `(consumer, Nats-Msg-Id)`. If the inbox
//! already holds the key, the insert does nothing, the caller rolls back and
//! acks, and the message has had exactly one effect — however often NATS
//! delivered it, and whether or not the re-publish fell inside the stream's
//! duplicate window.
//!
//! [`message_key`] turns whatever a publisher put in `Nats-Msg-Id` into a
//! key that is safe to store and log.
//!
//! Rows cannot be kept forever: [`InboxRetention`] deletes the ones older
//! than a horizon (which must outlast the duplicate window, or a late
//! duplicate would find no row) in small batches, run by one replica at a
//! time under a [`lease`] so replicas neither double the work nor deadlock.
//!
//! [`settle`] writes the statements that settle messages by group commit:
//! many messages to a transaction, each with its own inbox row and result.
#![forbid(unsafe_code)]

pub mod lease;
mod retention;
pub mod settle;

pub use retention::{
    INBOX_RETENTION, InboxRetention, Retention, RetentionConfig, RetentionJob, Sweep,
};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The longest `Nats-Msg-Id` used as it is for an inbox key.
pub const MESSAGE_KEY_MAX_LEN: usize = 200;

/// The inbox key of a message: its `Nats-Msg-Id` when that is 1-200
/// printable ASCII characters (every id Ordo writes is), a digest of it
/// otherwise (`sha256:<hex>`, so copies of one message still share a key
/// and nothing a publisher sends can overflow an index or break a log
/// line), and `<stream>:<sequence>` for a message with none.
pub fn message_key(message_id: Option<&str>, stream: &str, sequence: u64) -> String {
    match message_id {
        Some(id)
            if !id.is_empty()
                && id.len() <= MESSAGE_KEY_MAX_LEN
                && id.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        Some(id) if !id.is_empty() => {
            let digest = Sha256::digest(id.as_bytes());
            let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("sha256:{hex}")
        }
        _ => format!("{stream}:{sequence}"),
    }
}

/// Where a message came from, kept with its inbox row for an operator's
/// trail of the order: the order it is about (when it could be decoded),
/// its sequence in the stream and when the stream stored it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub order_id: Option<Uuid>,
    pub stream_sequence: u64,
    pub published_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// The values of the inbox columns `order_id, stream_sequence,
    /// published_at`, in that order.
    pub fn values(&self) -> [Value; 3] {
        [
            self.order_id.into(),
            i64::try_from(self.stream_sequence).ok().into(),
            self.published_at.into(),
        ]
    }
}

/// A stream's store time (as JetStream reports it, in nanoseconds since
/// the Unix epoch) as a UTC time; `None` when out of range.
pub fn published_at(unix_nanos: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(unix_nanos.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(unix_nanos.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(seconds, nanos)
}

/// Records `message_id` as handled by `consumer`, with what was done.
/// `Ok(false)` means the inbox already held it: a duplicate, to be rolled
/// back and acked.
pub async fn inbox_record_in_txn(
    txn: &impl ConnectionTrait,
    consumer: &str,
    message_id: &str,
    subject: &str,
    outcome: &str,
    delivery: &Delivery,
) -> Result<bool, DbErr> {
    let [order_id, stream_sequence, published_at] = delivery.values();
    let inserted = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO inbox (consumer, message_id, subject, outcome, order_id, stream_sequence, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                consumer.into(),
                message_id.into(),
                subject.into(),
                outcome.into(),
                order_id,
                stream_sequence,
                published_at,
            ],
        ))
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// One message a consumer took about an order, as its inbox row keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub consumer: String,
    pub message_id: String,
    pub subject: String,
    pub outcome: String,
    pub received_at: DateTime<Utc>,
    pub stream_sequence: Option<u64>,
    pub published_at: Option<DateTime<Utc>>,
}

/// Every message the inbox holds about `order_id`, oldest first (at most
/// `limit`).
pub async fn inbox_received_for_order(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    limit: u64,
) -> Result<Vec<Received>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT consumer, message_id, subject, outcome, received_at, stream_sequence, published_at \
             FROM inbox WHERE order_id = $1 ORDER BY received_at, message_id LIMIT $2",
            [order_id.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Received {
                consumer: row.try_get("", "consumer")?,
                message_id: row.try_get("", "message_id")?,
                subject: row.try_get("", "subject")?,
                outcome: row.try_get("", "outcome")?,
                received_at: row.try_get("", "received_at")?,
                stream_sequence: row
                    .try_get::<Option<i64>>("", "stream_sequence")?
                    .and_then(|sequence| u64::try_from(sequence).ok()),
                published_at: row.try_get("", "published_at")?,
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_are_safe_whatever_the_publisher_sent() {
        assert_eq!(message_key(Some("0190-abc"), "ORDERS", 7), "0190-abc");
        assert_eq!(message_key(None, "ORDERS", 7), "ORDERS:7");
        assert_eq!(message_key(Some(""), "ORDERS", 7), "ORDERS:7");
        let huge = "x".repeat(100_000);
        let key = message_key(Some(&huge), "ORDERS", 7);
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        assert_eq!(
            key,
            message_key(Some(&huge), "ORDERS", 8),
            "copies share a key"
        );
        assert!(message_key(Some("a b"), "S", 1).starts_with("sha256:"));
        assert!(message_key(Some("naïve"), "S", 1).starts_with("sha256:"));
    }
}
