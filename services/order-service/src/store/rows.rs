//! Rows ↔ domain: the only place that knows how an order is laid out in
//! rows — read through the SeaORM entities, written as one statement.

use ordo_outbox::OutboxRow;
use sea_orm::{DbBackend, Statement, Value};

use super::StoreError;
use super::entity::{order_lines, orders};
use crate::domain::{
    CorrelationId, Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku,
};

/// `$first, $first+1, …, $first+count-1`, in parentheses: one row of a
/// VALUES list.
fn placeholder_row(first: usize, count: usize) -> String {
    let list = (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("({list})")
}

/// One statement writing each order, its lines and its outbox event
/// (data-modifying CTEs: all of it or, on any error, none of it; the
/// foreign keys are checked at the statement's end, when all rows exist).
/// At most 518 values an order (100 lines): 100 orders stay under
/// PostgreSQL's 65,535 parameters.
pub(super) fn orders_insert_statement(placed: &[(&Order, OutboxRow)]) -> Statement {
    let mut values: Vec<Value> = Vec::new();
    let mut order_rows = Vec::with_capacity(placed.len());
    for (order, _) in placed {
        order_rows.push(placeholder_row(values.len() + 1, 9));
        values.extend([
            order.id.as_uuid().into(),
            order.customer_id.as_str().into(),
            order.currency.as_str().into(),
            order.total_minor.into(),
            order.status.as_str().into(),
            order.status_reason.as_str().into(),
            order.correlation_id.as_str().into(),
            order.created_at.fixed_offset().into(),
            order.updated_at.fixed_offset().into(),
        ]);
    }
    let mut line_rows = Vec::new();
    for (order, _) in placed {
        for (line, line_no) in order.lines.iter().zip(0_i32..) {
            line_rows.push(placeholder_row(values.len() + 1, 5));
            values.extend([
                order.id.as_uuid().into(),
                line_no.into(),
                line.sku.as_str().into(),
                // Quantities are at most 10,000.
                i32::try_from(line.quantity).unwrap_or(i32::MAX).into(),
                line.unit_price_minor.into(),
            ]);
        }
    }
    let mut event_rows = Vec::with_capacity(placed.len());
    for (_, event) in placed {
        event_rows.push(format!("({})", event.placeholders(values.len() + 1)));
        values.extend(event.clone().into_values());
    }
    let lines_cte = if line_rows.is_empty() {
        String::new()
    } else {
        format!(
            ", lines AS (INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor) VALUES {})",
            line_rows.join(", ")
        )
    };
    let sql = format!(
        "WITH placed AS (INSERT INTO orders (id, customer_id, currency, total_minor, status, status_reason, correlation_id, created_at, updated_at) \
           VALUES {orders}){lines_cte} \
         INSERT INTO outbox ({columns}) VALUES {events}",
        orders = order_rows.join(", "),
        columns = OutboxRow::COLUMNS,
        events = event_rows.join(", "),
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// One idempotency key to claim for the order that would be placed under it.
pub(super) struct KeyClaim<'a> {
    pub key: &'a str,
    pub fingerprint: &'a [u8],
    pub order: &'a Order,
}

/// Claims every key not yet taken, in one statement; the ids of the
/// orders whose key was claimed come back (a key another transaction holds
/// waits for its outcome, as a single insert would).
pub(super) fn keys_claim_statement(claims: &[KeyClaim<'_>]) -> Statement {
    let mut values: Vec<Value> = Vec::with_capacity(claims.len() * 4);
    let mut claim_rows = Vec::with_capacity(claims.len());
    for claim in claims {
        claim_rows.push(placeholder_row(values.len() + 1, 4));
        values.extend([
            claim.key.into(),
            claim.fingerprint.to_vec().into(),
            claim.order.id.as_uuid().into(),
            claim.order.created_at.fixed_offset().into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO idempotency_keys (key, request_hash, order_id, created_at) VALUES {} \
         ON CONFLICT (key) DO NOTHING RETURNING order_id",
        claim_rows.join(", ")
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// One statement moving each order of `moved` to its new status and
/// writing its event: an UPDATE by primary key per order (data-modifying
/// CTEs), never a join with a list of them — PostgreSQL may plan such a
/// join as a hash over every order, and keep that plan as the table grows.
pub(super) fn cancellations_statement(moved: &[(&Order, OutboxRow)]) -> Statement {
    let mut values: Vec<Value> = Vec::new();
    let mut moves = Vec::with_capacity(moved.len());
    for (n, (order, _)) in moved.iter().enumerate() {
        let first = values.len() + 1;
        moves.push(format!(
            "moved_{n} AS (UPDATE orders SET status = ${}, status_reason = ${}, updated_at = ${} WHERE id = ${})",
            first,
            first + 1,
            first + 2,
            first + 3
        ));
        values.extend([
            order.status.as_str().into(),
            order.status_reason.as_str().into(),
            order.updated_at.fixed_offset().into(),
            order.id.as_uuid().into(),
        ]);
    }
    let mut event_rows = Vec::with_capacity(moved.len());
    for (_, event) in moved {
        event_rows.push(format!("({})", event.placeholders(values.len() + 1)));
        values.extend(event.clone().into_values());
    }
    let sql = format!(
        "WITH {moves} INSERT INTO outbox ({columns}) VALUES {events}",
        moves = moves.join(", "),
        columns = OutboxRow::COLUMNS,
        events = event_rows.join(", "),
    );
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

/// Each order of `ids` locked for update and read, one index probe each
/// (a `LATERAL` subquery PostgreSQL can neither flatten nor hash), locked
/// in the order `ids` come (give them sorted, so two batches never wait on
/// each other in a cycle). Written as `id IN (…)`, the plan a connection
/// cached while the orders were few — a scan of the table — stayed in use
/// as they grew, and every batch read them all.
pub(super) fn orders_locked_statement(ids: impl IntoIterator<Item = uuid::Uuid>) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT o.* FROM unnest($1::uuid[]) WITH ORDINALITY AS wanted (id, n) \
         CROSS JOIN LATERAL (SELECT * FROM orders WHERE orders.id = wanted.id LIMIT 1 FOR UPDATE) AS o \
         ORDER BY wanted.n",
        [uuid_array(ids)],
    )
}

/// The lines of each order of `ids`, one index probe each (see
/// [`orders_locked_statement`]), in order and line order.
pub(super) fn lines_statement(ids: impl IntoIterator<Item = uuid::Uuid>) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT l.* FROM unnest($1::uuid[]) WITH ORDINALITY AS wanted (id, n) \
         CROSS JOIN LATERAL (SELECT * FROM order_lines WHERE order_lines.order_id = wanted.id OFFSET 0) AS l \
         ORDER BY wanted.n, l.line_no",
        [uuid_array(ids)],
    )
}

fn uuid_array(ids: impl IntoIterator<Item = uuid::Uuid>) -> Value {
    Value::Array(
        sea_orm::sea_query::ArrayType::Uuid,
        Some(Box::new(ids.into_iter().map(Value::from).collect())),
    )
}
