//! proto ↔ domain, at the gRPC edge only.

use ordo_proto::order::v1 as proto;

use crate::domain::{LineDraft, NewOrderDraft, Order, OrderStatus};
use crate::events::timestamp;

pub(super) fn draft_from_proto(request: proto::PlaceOrderRequest) -> NewOrderDraft {
    NewOrderDraft {
        customer_id: request.customer_id,
        lines: request
            .lines
            .into_iter()
            .map(|line| LineDraft {
                sku: line.sku,
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        currency: request.currency,
        idempotency_key: request.idempotency_key,
    }
}

/// A status filter: UNSPECIFIED means any.
pub(super) fn status_filter(raw: i32) -> Result<Option<OrderStatus>, String> {
    match proto::OrderStatus::try_from(raw) {
        Ok(proto::OrderStatus::Unspecified) => Ok(None),
        Ok(proto::OrderStatus::Pending) => Ok(Some(OrderStatus::Pending)),
        Ok(proto::OrderStatus::Confirmed) => Ok(Some(OrderStatus::Confirmed)),
        Ok(proto::OrderStatus::Rejected) => Ok(Some(OrderStatus::Rejected)),
        Ok(proto::OrderStatus::Cancelled) => Ok(Some(OrderStatus::Cancelled)),
        Err(_) => Err(format!("{raw} is not an OrderStatus")),
    }
}

fn status_to_proto(status: OrderStatus) -> proto::OrderStatus {
    match status {
        OrderStatus::Pending => proto::OrderStatus::Pending,
        OrderStatus::Confirmed => proto::OrderStatus::Confirmed,
        OrderStatus::Rejected => proto::OrderStatus::Rejected,
        OrderStatus::Cancelled => proto::OrderStatus::Cancelled,
    }
}

pub(super) fn order_to_proto(order: &Order) -> proto::Order {
    proto::Order {
        order_id: order.id.to_string(),
        customer_id: order.customer_id.as_str().to_owned(),
        lines: order
            .lines
            .iter()
            .map(|line| proto::OrderLine {
                sku: line.sku.as_str().to_owned(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        currency: order.currency.as_str().to_owned(),
        total_minor: order.total_minor,
        status: status_to_proto(order.status).into(),
        status_reason: order.status_reason.clone(),
        correlation_id: order.correlation_id.as_str().to_owned(),
        create_time: Some(timestamp(order.created_at)),
        update_time: Some(timestamp(order.updated_at)),
    }
}
