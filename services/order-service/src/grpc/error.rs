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
            StoreError::Database(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %err, "request failed");
                Self::Internal
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let message = err.to_string();
        match err {
            ApiError::InvalidArgument(violations) => {
                let details = ErrorDetails::with_bad_request(
                    violations
                        .iter()
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
            ApiError::Internal => Status::internal(message),
        }
    }
}
