//! Which failures are worth another try, and how layers report their own.
//!
//! Classification works on the typed error (`tonic::Status` for gRPC):
//! at tonic's HTTP layer an error status is still an `Ok` response, so a
//! layer there would see only transport errors.

use std::time::Duration;

use tonic::{Code, Status};

/// Metadata on a status made by an open breaker: the breaker's name.
pub const CIRCUIT_OPEN_KEY: &str = "ordo-circuit-open";
/// Metadata on a status made by an open breaker: milliseconds until it half-opens.
pub const RETRY_AFTER_KEY: &str = "ordo-retry-after-ms";

/// An error the resilience layers can classify and produce.
pub trait Failure: Sized {
    /// Whether trying again may succeed (and so whether it counts against
    /// a breaker: the other side, or the way to it, is unwell).
    fn is_transient(&self) -> bool;
    /// The error of a call that took longer than `after`.
    fn timed_out(after: Duration) -> Self;
    /// The error of a call refused by the open breaker `breaker`, which
    /// half-opens in `retry_after`.
    fn circuit_open(breaker: &str, retry_after: Duration) -> Self;
}

impl Failure for Status {
    /// The other side is unwell or unreachable (UNAVAILABLE, DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED), or the call was cut with its outcome unknown
    /// (UNKNOWN and INTERNAL: a reset or a crash mid-call; ABORTED): asking
    /// again is how the outcome becomes known, and safe for calls that carry
    /// an idempotency key — which every call Ordo retries does.
    fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal
                | Code::Aborted
        ) && circuit_open_retry_after(self).is_none()
    }

    fn timed_out(after: Duration) -> Self {
        Status::deadline_exceeded(format!("no answer within {} ms", after.as_millis()))
    }

    fn circuit_open(breaker: &str, retry_after: Duration) -> Self {
        let millis = retry_after.as_millis();
        let mut status = Status::unavailable(format!(
            "circuit breaker {breaker} is open; calls resume in {millis} ms"
        ));
        if let Ok(name) = breaker.parse() {
            status.metadata_mut().insert(CIRCUIT_OPEN_KEY, name);
        }
        if let Ok(value) = millis.to_string().parse() {
            status.metadata_mut().insert(RETRY_AFTER_KEY, value);
        }
        status
    }
}

/// The boxed errors of non-gRPC calls (e.g. publishing to NATS): every
/// failure is taken as transient, except a breaker's own refusal.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call that took longer than its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for TimedOut {}

/// A call refused by an open breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    pub breaker: String,
    pub retry_after: Duration,
}

impl std::fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit breaker {} is open; calls resume in {} ms",
            self.breaker,
            self.retry_after.as_millis()
        )
    }
}

impl std::error::Error for CircuitOpen {}

/// A failure no retry can cure (the request itself cannot be carried out,
/// e.g. a message the broker will never accept): not transient, and no
/// sign of the other side being unwell, so breakers do not count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

impl Failure for BoxError {
    fn is_transient(&self) -> bool {
        !self.is::<CircuitOpen>() && !self.is::<Permanent>()
    }

    fn timed_out(after: Duration) -> Self {
        Box::new(TimedOut(after))
    }

    fn circuit_open(breaker: &str, retry_after: Duration) -> Self {
        Box::new(CircuitOpen {
            breaker: breaker.to_owned(),
            retry_after,
        })
    }
}

/// If `status` came from an open breaker: how long until it half-opens.
pub fn circuit_open_retry_after(status: &Status) -> Option<Duration> {
    status.metadata().get(CIRCUIT_OPEN_KEY)?;
    let millis = status
        .metadata()
        .get(RETRY_AFTER_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_codes_are_worth_another_try() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Unknown,
            Code::Internal,
            Code::Aborted,
        ] {
            assert!(Status::new(code, "x").is_transient(), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
        ] {
            assert!(!Status::new(code, "x").is_transient(), "{code:?}");
        }
    }

    #[test]
    fn boxed_errors_are_transient_unless_a_breaker_refused_or_permanent() {
        let failed: BoxError = "connection reset".into();
        assert!(failed.is_transient());
        let permanent: BoxError = Box::new(Permanent("header value has a line break".into()));
        assert!(!permanent.is_transient());
        assert!(BoxError::timed_out(Duration::from_secs(1)).is_transient());
        let open = BoxError::circuit_open("nats", Duration::from_secs(2));
        assert!(!open.is_transient());
        assert!(open.to_string().contains("nats"));
    }

    #[test]
    fn an_open_breaker_is_not_retried_and_says_when_it_reopens() {
        let open = Status::circuit_open("payments", Duration::from_millis(1500));
        assert_eq!(open.code(), Code::Unavailable);
        assert!(!open.is_transient());
        assert_eq!(
            circuit_open_retry_after(&open),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(circuit_open_retry_after(&Status::unavailable("down")), None);
    }
}
