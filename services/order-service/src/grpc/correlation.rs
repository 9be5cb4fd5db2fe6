//! The `x-correlation-id` request metadata: read or generated on the way in,
//! echoed on the way out (on success and on error alike).

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use crate::domain::{CorrelationId, Violations};

/// Metadata key of the correlation id.
pub const METADATA_KEY: &str = "x-correlation-id";

/// The caller's correlation id, or a fresh one when it sent none.
pub(super) fn from_request<T>(request: &Request<T>) -> Result<CorrelationId, ApiError> {
    match request.metadata().get(METADATA_KEY) {
        None => Ok(CorrelationId::generate()),
        Some(value) => value
            .to_str()
            .map_err(|_| "must be printable ASCII".to_owned())
            .and_then(CorrelationId::parse)
            .map_err(|description| Violations::one(METADATA_KEY, description).into()),
    }
}

/// Turns a handler's result into the gRPC answer, tagged with `correlation_id`.
pub(super) fn respond<T>(
    result: Result<T, ApiError>,
    correlation_id: Option<&CorrelationId>,
) -> Result<Response<T>, Status> {
    let value = correlation_id.and_then(|id| MetadataValue::try_from(id.as_str()).ok());
    match result {
        Ok(message) => {
            let mut response = Response::new(message);
            if let Some(value) = value {
                response.metadata_mut().insert(METADATA_KEY, value);
            }
            Ok(response)
        }
        Err(err) => {
            let mut status = Status::from(err);
            if let Some(value) = value {
                status.metadata_mut().insert(METADATA_KEY, value);
            }
            Err(status)
        }
    }
}
