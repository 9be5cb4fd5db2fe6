//! Resilience at every process boundary, built once as tower layers.
//!
//! A call to another process goes through, outermost first:
//!
//! ```text
//! Retry ─▶ CircuitBreaker ─▶ Timeout ─▶ the typed client call
//! ```
//!
//! - [`retry`]: tries a transient failure again after a [`backoff`] delay,
//!   within a number of attempts, an elapsed-time budget and the caller's
//!   deadline; never a non-transient one, never an open breaker.
//! - [`breaker`]: CLOSED → OPEN when the failure rate over a rolling window
//!   crosses a threshold; OPEN fails fast for a cool-down; HALF_OPEN lets a
//!   few probes through. Its state is watched (health, metrics) and logged.
//! - [`timeout`]: bounds one call by the smaller of its own timeout and
//!   what is left of the caller's [`deadline`], and hands that deadline on.
//!
//! Servers put two layers in front of every request (HTTP level, so they
//! answer with a gRPC status before any decoding):
//!
//! - [`load_shed`]: at most N requests in flight; the next gets
//!   RESOURCE_EXHAUSTED at once instead of waiting in an unbounded queue.
//! - [`request_deadline`]: honours the caller's `grpc-timeout` (capped by
//!   the server's own request timeout), makes it the [`deadline`] of
//!   everything the handler calls, and answers DEADLINE_EXCEEDED when it passes.
//!
//! What counts as transient is [`classify::Failure`]: for gRPC, UNAVAILABLE,
//! DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and transport errors — classified
//! on the typed `tonic::Status`, since at tonic's HTTP layer an error status
//! is still an `Ok` response.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod breaker;
pub mod classify;
pub mod deadline;
pub mod load_shed;
pub mod request_deadline;
pub mod retry;
pub mod timeout;

pub use backoff::{Backoff, BackoffKind};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer};
pub use classify::Failure;
pub use load_shed::LoadShedLayer;
pub use request_deadline::RequestDeadlineLayer;
pub use retry::{RetryLayer, RetryPolicy};
pub use timeout::TimeoutLayer;
