//! Entity ↔ domain: the only place that knows how an order is laid out in rows.

use sea_orm::ActiveValue::Set;

use super::StoreError;
use super::entity::{order_lines, orders};
use crate::domain::{
    CorrelationId, Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku,
};

/// The rows that store `order`.
pub(super) fn rows_from_order(
    order: &Order,
) -> (orders::ActiveModel, Vec<order_lines::ActiveModel>) {
    let order_row = orders::ActiveModel {
        id: Set(order.id.as_uuid()),
        customer_id: Set(order.customer_id.as_str().to_owned()),
        currency: Set(order.currency.as_str().to_owned()),
        total_minor: Set(order.total_minor),
        status: Set(order.status.as_str().to_owned()),
        status_reason: Set(order.status_reason.clone()),
        correlation_id: Set(order.correlation_id.as_str().to_owned()),
        created_at: Set(order.created_at.fixed_offset()),
        updated_at: Set(order.updated_at.fixed_offset()),
    };
    let line_rows = order
        .lines
        .iter()
        .zip(0_i32..)
        .map(|(line, line_no)| order_lines::ActiveModel {
            order_id: Set(order.id.as_uuid()),
            line_no: Set(line_no),
            sku: Set(line.sku.as_str().to_owned()),
            // Quantities are at most 10,000.
            quantity: Set(i32::try_from(line.quantity).unwrap_or(i32::MAX)),
            unit_price_minor: Set(line.unit_price_minor),
        })
        .collect();
    (order_row, line_rows)
}

/// The order stored in `model` and its `lines` (in line order).
pub(super) fn order_from_rows(
    model: orders::Model,
    lines: Vec<order_lines::Model>,
) -> Result<Order, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {}: {what}", model.id));
    let status = OrderStatus::parse(&model.status).ok_or_else(|| corrupt("unknown status"))?;
    let currency = Currency::parse(&model.currency).map_err(|_| corrupt("bad currency"))?;
    let lines = lines
        .into_iter()
        .map(|line| {
            Ok(OrderLine {
                sku: Sku::from_stored(line.sku),
                quantity: u32::try_from(line.quantity).map_err(|_| corrupt("bad quantity"))?,
                unit_price_minor: line.unit_price_minor,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Order {
        id: OrderId::from_uuid(model.id),
        customer_id: CustomerId::from_stored(model.customer_id),
        lines,
        currency,
        total_minor: model.total_minor,
        status,
        status_reason: model.status_reason,
        correlation_id: CorrelationId::from_stored(model.correlation_id),
        created_at: model.created_at.to_utc(),
        updated_at: model.updated_at.to_utc(),
    })
}
