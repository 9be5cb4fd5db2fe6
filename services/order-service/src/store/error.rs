//! What can go wrong in the store, sorted by what the caller should do.

use sea_orm::{DbErr, RuntimeErr, sqlx};

use crate::domain::{OrderId, OrderStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("order {0} not found")]
    OrderNotFound(OrderId),
    #[error("idempotency key already used for a different request")]
    IdempotencyConflict,
    #[error("order is {} and cannot be cancelled", .0.as_str().to_lowercase())]
    CannotCancel(OrderStatus),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),
    #[error("database error: {0}")]
    Database(#[source] DbErr),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

/// Whether the database could not be reached at all, as opposed to refusing
/// a statement: the caller may retry the former.
fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_err)) => match sqlx_err.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exception; 57P0x: server shutting down.
            sqlx::Error::Database(db_err) => db_err
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        },
        _ => false,
    }
}
