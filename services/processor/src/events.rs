//! The verdicts the processor emits, encoded as `ordo.events.v1` protobuf
//! and wrapped as rows of its own outbox.

use chrono::{DateTime, Utc};
use ordo_outbox::OutboxEvent;
use ordo_proto::events::v1 as events;
use prost::Message as _;

pub use ordo_proto::timestamp;
use uuid::Uuid;

/// The `ce-source` of every event the processor emits.
pub const SOURCE: &str = "/ordo/processor";
/// Same aggregate as the order service's events, so one order's events
/// share a partition.
pub const AGGREGATE_ORDER: &str = "order";
pub const SUBJECT_CONFIRMED: &str = "orders.confirmed";
pub const SUBJECT_REJECTED: &str = "orders.rejected";
pub const SUBJECT_REFUNDED: &str = "orders.refunded";

/// `OrderConfirmed`: the payment was authorized.
pub fn order_confirmed(order_id: Uuid, payment_id: &str, correlation_id: &str) -> OutboxEvent {
    let now = Utc::now();
    let event = outbox_event(
        order_id,
        SUBJECT_CONFIRMED,
        "ordo.events.v1.OrderConfirmed",
        now,
        correlation_id,
    );
    let payload = events::OrderConfirmed {
        event_id: event.event_id.to_string(),
        order_id: order_id.to_string(),
        payment_id: payment_id.to_owned(),
        correlation_id: correlation_id.to_owned(),
        occur_time: Some(timestamp(now)),
    };
    event.with_payload(payload.encode_to_vec())
}

/// `OrderRejected`: the payment was declined, for `reason`.
pub fn order_rejected(order_id: Uuid, reason: &str, correlation_id: &str) -> OutboxEvent {
    let now = Utc::now();
    let event = outbox_event(
        order_id,
        SUBJECT_REJECTED,
        "ordo.events.v1.OrderRejected",
        now,
        correlation_id,
    );
    let payload = events::OrderRejected {
        event_id: event.event_id.to_string(),
        order_id: order_id.to_string(),
        reason: reason.to_owned(),
        correlation_id: correlation_id.to_owned(),
        occur_time: Some(timestamp(now)),
    };
    event.with_payload(payload.encode_to_vec())
}

/// `OrderRefunded`: a cancelled order's payment was refunded.
pub fn order_refunded(
    order_id: Uuid,
    payment_id: &str,
    refund_id: &str,
    correlation_id: &str,
) -> OutboxEvent {
    let now = Utc::now();
    let event = outbox_event(
        order_id,
        SUBJECT_REFUNDED,
        "ordo.events.v1.OrderRefunded",
        now,
        correlation_id,
    );
    let payload = events::OrderRefunded {
        event_id: event.event_id.to_string(),
        order_id: order_id.to_string(),
        payment_id: payment_id.to_owned(),
        refund_id: refund_id.to_owned(),
        correlation_id: correlation_id.to_owned(),
        occur_time: Some(timestamp(now)),
    };
    event.with_payload(payload.encode_to_vec())
}

fn outbox_event(
    order_id: Uuid,
    subject: &'static str,
    event_type: &'static str,
    occurred_at: DateTime<Utc>,
    correlation_id: &str,
) -> OutboxEvent {
    OutboxEvent::new(
        SOURCE,
        AGGREGATE_ORDER,
        order_id.to_string(),
        subject,
        event_type,
        occurred_at,
        correlation_id,
    )
}
