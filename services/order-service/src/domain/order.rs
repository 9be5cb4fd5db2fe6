//! An order as stored, and its life cycle.

use chrono::{DateTime, Utc};

use super::{CorrelationId, Currency, CustomerId, OrderId, Sku};

pub use ordo_lifecycle::order::OrderStatus;

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
