//! The events the order service emits, encoded as `ordo.events.v1`
//! protobuf and wrapped as outbox rows.

use chrono::{DateTime, Utc};
use ordo_outbox::OutboxEvent;
use ordo_proto::events::v1 as events;
use prost::Message as _;

pub use ordo_proto::timestamp;

use crate::domain::{CancelReason, CorrelationId, Order};

/// The `ce-source` of every event this service emits.
pub const SOURCE: &str = "/ordo/order-service";
/// Aggregate type of orders in the outbox.
pub const AGGREGATE_ORDER: &str = "order";
/// Subject of [`events::OrderPlaced`].
pub const SUBJECT_PLACED: &str = "orders.placed";
/// Subject of [`events::OrderCancelled`].
pub const SUBJECT_CANCELLED: &str = "orders.cancelled";

/// `OrderPlaced` for a freshly created order.
pub fn order_placed(order: &Order) -> OutboxEvent {
    let event = outbox_event(
        order,
        SUBJECT_PLACED,
        "ordo.events.v1.OrderPlaced",
        order.created_at,
        &order.correlation_id,
    );
    let payload = events::OrderPlaced {
        event_id: event.event_id.to_string(),
        order_id: order.id.to_string(),
        customer_id: order.customer_id.as_str().to_owned(),
        lines: order
            .lines
            .iter()
            .map(|line| events::EventLine {
                sku: line.sku.as_str().to_owned(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        currency: order.currency.as_str().to_owned(),
        total_minor: order.total_minor,
        correlation_id: order.correlation_id.as_str().to_owned(),
        occur_time: Some(timestamp(order.created_at)),
    }
    .encode_to_vec();
    event.with_payload(payload)
}

/// `OrderCancelled` for an order just cancelled by a request with `correlation_id`.
pub fn order_cancelled(
    order: &Order,
    reason: &CancelReason,
    correlation_id: &CorrelationId,
) -> OutboxEvent {
    let event = outbox_event(
        order,
        SUBJECT_CANCELLED,
        "ordo.events.v1.OrderCancelled",
        order.updated_at,
        correlation_id,
    );
    let payload = events::OrderCancelled {
        event_id: event.event_id.to_string(),
        order_id: order.id.to_string(),
        customer_id: order.customer_id.as_str().to_owned(),
        reason: reason.as_str().to_owned(),
        correlation_id: correlation_id.as_str().to_owned(),
        occur_time: Some(timestamp(order.updated_at)),
    }
    .encode_to_vec();
    event.with_payload(payload)
}

fn outbox_event(
    order: &Order,
    subject: &'static str,
    event_type: &'static str,
    occurred_at: DateTime<Utc>,
    correlation_id: &CorrelationId,
) -> OutboxEvent {
    OutboxEvent::new(
        SOURCE,
        AGGREGATE_ORDER,
        order.id.to_string(),
        subject,
        event_type,
        occurred_at,
        correlation_id.as_str(),
    )
}
