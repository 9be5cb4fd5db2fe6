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
#![forbid(unsafe_code)]

pub mod lease;
mod retention;

pub use retention::{
    INBOX_RETENTION, InboxRetention, Retention, RetentionConfig, RetentionJob, Sweep,
};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use sha2::{Digest as _, Sha256};

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
