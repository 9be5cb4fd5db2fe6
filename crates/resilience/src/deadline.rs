//! The deadline of the work in progress, carried in a task-local so every
//! call made on its behalf sees what is left of it.
//!
//! A server sets it from the caller's `grpc-timeout`
//! ([`crate::request_deadline`]); a client call shrinks it to its own
//! timeout ([`crate::timeout`]) and sends what is left as its own
//! `grpc-timeout` ([`set_grpc_timeout`]). Nested scopes only ever shorten it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The current deadline, if the work has one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Time left until the current deadline (zero once past it).
pub fn remaining() -> Option<Duration> {
    current().map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Runs `work` with `deadline`, or the current one if that is earlier.
pub async fn scope<F: Future>(deadline: Instant, work: F) -> F::Output {
    let deadline = current().map_or(deadline, |outer| outer.min(deadline));
    DEADLINE.scope(deadline, work).await
}

/// Sets `grpc-timeout` on an outgoing request to what is left of the
/// current deadline, so the server downstream gives up when we do.
pub fn set_grpc_timeout<T>(request: &mut tonic::Request<T>) {
    if let Some(left) = remaining() {
        request.set_timeout(left.max(Duration::from_millis(1)));
    }
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        for bad in ["", "m", "12", "123456789m", "5x", "-5m"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_only_shorten_the_deadline() {
        assert_eq!(remaining(), None);
        let start = Instant::now();
        scope(start + Duration::from_millis(200), async {
            tokio::time::advance(Duration::from_millis(50)).await;
            assert_eq!(remaining(), Some(Duration::from_millis(150)));
            scope(start + Duration::from_secs(10), async {
                assert_eq!(remaining(), Some(Duration::from_millis(150)));
            })
            .await;
            let mut request = tonic::Request::new(());
            set_grpc_timeout(&mut request);
            assert!(request.metadata().get("grpc-timeout").is_some());
        })
        .await;
    }
}
