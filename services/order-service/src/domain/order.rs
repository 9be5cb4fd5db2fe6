//! An order as stored, and its life cycle.

use chrono::{DateTime, Utc};

use super::{CorrelationId, Currency, CustomerId, OrderId, Sku};

/// Where an order is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Confirmed,
            Self::Rejected,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == stored)
    }

    /// A customer may cancel while payment is pending or after it was
    /// captured (the processor then refunds); not once the order has ended.
    pub fn can_cancel(self) -> bool {
        matches!(self, Self::Pending | Self::Confirmed)
    }
}

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price_minor: i64,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub lines: Vec<OrderLine>,
    pub currency: Currency,
    pub total_minor: i64,
    pub status: OrderStatus,
    pub status_reason: String,
    pub correlation_id: CorrelationId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::OrderStatus;

    #[test]
    fn status_names_round_trip() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Rejected,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }

    #[test]
    fn only_live_orders_can_be_cancelled() {
        assert!(OrderStatus::Pending.can_cancel());
        assert!(OrderStatus::Confirmed.can_cancel());
        assert!(!OrderStatus::Rejected.can_cancel());
        assert!(!OrderStatus::Cancelled.can_cancel());
    }
}
