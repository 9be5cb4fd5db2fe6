//! Rows ↔ domain: the only place that knows how an order is laid out in
//! rows — read through the SeaORM entities, written as one statement.

use ordo_outbox::OutboxRow;
use sea_orm::{DbBackend, Statement, Value};

use super::StoreError;
use super::entity::{order_lines, orders};
use crate::domain::{
    CorrelationId, Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku,
};

/// One statement writing `order`, its lines and its outbox `event`
/// (data-modifying CTEs: all of it or, on any error, none of it; the
/// foreign keys are checked at the statement's end, when all rows exist).
pub(super) fn order_insert_statement(order: &Order, event: OutboxRow) -> Statement {
    let mut values: Vec<Value> = vec![
        order.id.as_uuid().into(),
        order.customer_id.as_str().into(),
        order.currency.as_str().into(),
        order.total_minor.into(),
        order.status.as_str().into(),
        order.status_reason.as_str().into(),
        order.correlation_id.as_str().into(),
        order.created_at.fixed_offset().into(),
        order.updated_at.fixed_offset().into(),
    ];
    let mut lines = Vec::with_capacity(order.lines.len());
    for (line, line_no) in order.lines.iter().zip(0_i32..) {
        let first = values.len() + 1;
        lines.push(format!(
            "(${first}, ${}, ${}, ${}, ${})",
            first + 1,
            first + 2,
            first + 3,
            first + 4
        ));
        values.extend([
            order.id.as_uuid().into(),
            line_no.into(),
            line.sku.as_str().into(),
            // Quantities are at most 10,000.
            i32::try_from(line.quantity).unwrap_or(i32::MAX).into(),
            line.unit_price_minor.into(),
        ]);
    }
    let lines_cte = if lines.is_empty() {
        String::new()
    } else {
        format!(
            ", lines AS (INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor) VALUES {})",
            lines.join(", ")
        )
    };
    let sql = format!(
        "WITH placed AS (INSERT INTO orders (id, customer_id, currency, total_minor, status, status_reason, correlation_id, created_at, updated_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)){lines_cte} \
         INSERT INTO outbox ({columns}) VALUES ({placeholders})",
        columns = OutboxRow::COLUMNS,
        placeholders = event.placeholders(values.len() + 1),
    );
    values.extend(event.into_values());
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
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
