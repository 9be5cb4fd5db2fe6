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
    #[error("transaction conflicted with another: {0}")]
    Conflict(#[source] DbErr),
    #[error("connection lost while committing; the outcome is unknown: {0}")]
    CommitOutcomeUnknown(#[source] DbErr),
    #[error("database error: {0}")]
    Database(#[source] DbErr),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else if is_conflict(&err) {
            Self::Conflict(err)
        } else {
            Self::Database(err)
        }
    }
}

impl StoreError {
    /// Classifies an error of `COMMIT` itself: when the connection drops
    /// there, the transaction may or may not have committed, so "retry"
    /// would be a lie for a request without an idempotency key.
    pub(crate) fn from_commit(err: DbErr) -> Self {
        match Self::from(err) {
            Self::Unavailable(err) => Self::CommitOutcomeUnknown(err),
            other => other,
        }
    }
}

/// Serialization failure or deadlock: the transaction was rolled back and
/// may simply be retried.
fn is_conflict(err: &DbErr) -> bool {
    sqlx_error(err).is_some_and(|sqlx_err| match sqlx_err {
        sqlx::Error::Database(db_err) => {
            matches!(db_err.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    })
}

fn sqlx_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_err))
        | DbErr::Conn(RuntimeErr::SqlxError(sqlx_err)) => Some(sqlx_err.as_ref()),
        _ => None,
    }
}

/// Whether the database could not be reached at all, as opposed to refusing
/// a statement: the caller may retry the former.
fn is_unavailable(err: &DbErr) -> bool {
    if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        return true;
    }
    sqlx_error(err).is_some_and(|sqlx_err| match sqlx_err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P0x: server shutting down.
        sqlx::Error::Database(db_err) => db_err
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    })
}
