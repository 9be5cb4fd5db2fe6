//! The processor's view of an order: where its payment stands (a stage of
//! the payment machine, `ordo_lifecycle::payment`), the failed attempts on
//! the way, and what operators did. Knows neither tonic nor SeaORM.

use chrono::{DateTime, Utc};
use ordo_lifecycle::payment::{Record, Stage};
use uuid::Uuid;

/// The processor's record of one order, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingRecord {
    pub order_id: Uuid,
    pub state: Stage,
    /// Failed attempts over every message about the order.
    pub attempts: u32,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub status_reason: String,
    pub correlation_id: String,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every write: a decision made on an older version is made again.
    pub version: i64,
}

impl ProcessingRecord {
    /// What the payment machine sees of it.
    pub fn machine(&self) -> Record {
        Record {
            stage: self.state,
            payment_id: self.payment_id.clone(),
            refund_id: self.refund_id.clone(),
            reason: self.status_reason.clone(),
        }
    }
}

/// What an operator did to a dead letter, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub order_id: Option<Uuid>,
    pub dead_letter_id: u64,
    pub message_id: String,
    pub subject: String,
    /// `redrive` or `purge`.
    pub action: String,
    /// The name of the admin token used.
    pub actor: String,
    pub reason: String,
    pub outcome: String,
    pub occurred_at: DateTime<Utc>,
}

/// One failed attempt at handling a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorEntry {
    pub message_id: String,
    pub subject: String,
    pub attempt: u32,
    pub occurred_at: DateTime<Utc>,
    pub code: String,
    pub text: String,
    pub instance: String,
    /// The correlation id of the request the message stems from.
    #[serde(default)]
    pub correlation_id: String,
}

/// Why an attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short and machine-readable: `payment_unavailable`, `database`, …
    pub code: &'static str,
    pub text: String,
    /// A later attempt may succeed (an outage, a timeout); otherwise the
    /// message is dead-lettered at once.
    pub transient: bool,
    /// Not an attempt at all: the call was refused before it was made (an
    /// open breaker); try the message again after this long, spending nothing.
    pub defer_for: Option<std::time::Duration>,
}

/// The longest failure text kept (history, dead letters, logs).
const MAX_FAILURE_TEXT: usize = 1024;

/// A failure's text, safe to store and log, whatever it echoes.
fn failure_text(text: impl Into<String>) -> String {
    ordo_telemetry::safe_text(&text.into(), MAX_FAILURE_TEXT)
}

impl Failure {
    pub fn transient(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            text: failure_text(text),
            transient: true,
            defer_for: None,
        }
    }

    pub fn deferred(
        code: &'static str,
        text: impl Into<String>,
        after: std::time::Duration,
    ) -> Self {
        Self {
            code,
            text: failure_text(text),
            transient: true,
            defer_for: Some(after),
        }
    }

    pub fn permanent(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            text: failure_text(text),
            transient: false,
            defer_for: None,
        }
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::transient("database", err.to_string())
    }
}
