//! The processor's view of an order: where its payment stands, and the
//! failed attempts on the way. Knows neither tonic nor SeaORM.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where the processor is with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingState {
    /// An attempt failed; the message will come back after a backoff.
    Retrying,
    /// Payment authorized; `OrderConfirmed` emitted.
    Confirmed,
    /// Payment declined; `OrderRejected` emitted.
    Rejected,
    /// Attempts exhausted: the message is in the dead-letter stream and the
    /// order waits, PENDING, until it is redriven.
    DeadLettered,
    /// Cancelled while its payment was being authorized: the authorization
    /// must be refunded (by whichever message gets there first).
    RefundDue,
    /// Cancelled with no payment captured: nothing to refund.
    Cancelled,
    /// Cancelled after capture and refunded once; `OrderRefunded` emitted.
    Refunded,
}

impl ProcessingState {
    /// The name stored in `order_processing.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retrying => "retrying",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::DeadLettered => "dead_lettered",
            Self::RefundDue => "refund_due",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    /// Parses [`ProcessingState::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Retrying,
            Self::Confirmed,
            Self::Rejected,
            Self::DeadLettered,
            Self::RefundDue,
            Self::Cancelled,
            Self::Refunded,
        ]
        .into_iter()
        .find(|state| state.as_str() == raw)
    }

    /// Whether an `OrderPlaced` may still be acted on: no verdict reached
    /// and no cancellation seen.
    pub fn awaits_payment(state: Option<Self>) -> bool {
        matches!(state, None | Some(Self::Retrying | Self::DeadLettered))
    }
}

/// The processor's record of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingRecord {
    pub order_id: Uuid,
    pub state: ProcessingState,
    /// Failed attempts over every message about the order.
    pub attempts: u32,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub status_reason: String,
    pub correlation_id: String,
    pub updated_at: DateTime<Utc>,
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

impl Failure {
    pub fn transient(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
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
            text: text.into(),
            transient: true,
            defer_for: Some(after),
        }
    }

    pub fn permanent(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
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
