//! SeaORM entities of the order tables (see `migrations/sql/0001_orders.up.sql`).

pub mod idempotency_keys;
pub mod order_lines;
pub mod orders;
