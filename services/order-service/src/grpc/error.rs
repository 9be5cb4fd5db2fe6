//! The one place service errors become gRPC statuses. Internal details are
//! logged here and never sent to clients.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Violations;
use crate::store::StoreError;

/// Why a request failed, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {0}")]
    InvalidArgument(Violations),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database unavailable, retry later")]
    Unavailable,
    #[error("conflicting concurrent change, retry")]
    Aborted,
    #[error(
        "connection lost while committing; the change may or may not have been applied (retry with the same idempotency key to find out)"
    )]
    OutcomeUnknown,
    #[error("internal error")]
    Internal,
}

impl From<Violations> for ApiError {
    fn from(violations: Violations) -> Self {
        Self::InvalidArgument(violations)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::OrderNotFound(_) => Self::NotFound(err.to_string()),
            StoreError::IdempotencyConflict => Self::AlreadyExists(err.to_string()),
            StoreError::CannotCancel(_) => Self::FailedPrecondition(err.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "request failed: database unavailable");
                Self::Unavailable
            }
            StoreError::Conflict(_) => {
                tracing::info!(error = %err, "request aborted by a conflicting transaction");
                Self::Aborted
            }
            StoreError::CommitOutcomeUnknown(_) => {
                tracing::error!(error = %err, "commit outcome unknown");
                Self::OutcomeUnknown
            }
            StoreError::Database(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %err, "request failed");
                Self::Internal
            }
        }
    }
}

/// Most field violations sent back in one status. A status travels in HTTP/2
/// trailers, and common clients refuse header lists over 16 KiB: a request
/// with 100 bad lines would otherwise turn its INVALID_ARGUMENT into a
/// protocol error on the client.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

/// A short message for an invalid request: the first violation and how many
/// there are in all.
fn invalid_request_message(violations: &Violations) -> String {
    let total = violations.iter().count();
    let first = violations
        .iter()
        .next()
        .map(|v| format!("{}: {}", v.field, v.description))
        .unwrap_or_default();
    match total {
        0 | 1 => format!("invalid request: {first}"),
        n if n <= MAX_LISTED_VIOLATIONS => {
            format!("invalid request: {first} (and {} more, see details)", n - 1)
        }
        n => format!(
            "invalid request: {first} (and {} more; details list the first {MAX_LISTED_VIOLATIONS})",
            n - 1
        ),
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let message = match &err {
            ApiError::InvalidArgument(violations) => invalid_request_message(violations),
            other => other.to_string(),
        };
        match err {
            ApiError::InvalidArgument(violations) => {
                let details = ErrorDetails::with_bad_request(
                    violations
                        .iter()
                        .take(MAX_LISTED_VIOLATIONS)
                        .map(|violation| {
                            tonic_types::FieldViolation::new(
                                violation.field.clone(),
                                violation.description.clone(),
                            )
                        })
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::AlreadyExists(_) => Status::already_exists(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::Unavailable => Status::unavailable(message),
            ApiError::Aborted => Status::aborted(message),
            ApiError::OutcomeUnknown => Status::unknown(message),
            ApiError::Internal => Status::internal(message),
        }
    }
}
