//! SQL statements this process sent, counted on every pool it opens, for
//! `ordo_db_statements_total` (statements per order is what batching
//! lowers). BEGIN and COMMIT are not statements here.

use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DatabaseConnection;

static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts every statement `db` (and its clones) runs from now on.
pub fn count_statements_of(db: &mut DatabaseConnection) {
    db.set_metric_callback(|_| {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    });
}

/// Statements counted so far in this process.
pub fn statements_total() -> u64 {
    STATEMENTS.load(Ordering::Relaxed)
}

/// `ordo_db_statements_total`.
pub fn expose(out: &mut ordo_telemetry::metrics::Exposition) {
    out.counter(
        "ordo_db_statements_total",
        "SQL statements this process sent to PostgreSQL (BEGIN and COMMIT aside).",
        [(&[][..], statements_total() as f64)],
    );
}
