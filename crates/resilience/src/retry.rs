//! Retry with backoff.
//!
//! Per call: attempt 1; on a transient failure wait the backoff's next
//! delay and try again, until one of these stops it —
//! the answer is a success or a non-transient failure (returned as is),
//! `max_attempts` were made, the next delay would pass `max_elapsed` since
//! the first attempt, or it would pass the caller's deadline. The last
//! failure is returned. Requests must be `Clone` (retry at the typed-client
//! level, where they are; a tonic HTTP body is a stream).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt as _};

use crate::backoff::Backoff;
use crate::classify::Failure;
use crate::deadline;

/// When and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// No retry starts later than this after the first attempt.
    pub max_elapsed: Duration,
    pub backoff: Backoff,
}

/// Retries transient failures under a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
}

impl RetryLayer {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            retries: Arc::default(),
        }
    }

    /// Retries made so far by every service this layer built (a metric).
    pub fn retries(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.retries)
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy,
            retries: Arc::clone(&self.retries),
        }
    }
}

/// See [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
}

impl<S, Req> Service<Req> for Retry<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Failure + Send,
    S::Response: Send,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness is awaited per attempt, on a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy;
        let retries = Arc::clone(&self.retries);
        Box::pin(async move {
            let started = Instant::now();
            let mut delays = policy.backoff.delays();
            let mut attempt = 1;
            loop {
                let failure = match inner.clone().oneshot(request.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(failure) => failure,
                };
                if !failure.is_transient() || attempt >= policy.max_attempts.max(1) {
                    return Err(failure);
                }
                let delay = delays.next().unwrap_or(policy.backoff.max);
                let within_budget = started.elapsed() + delay <= policy.max_elapsed;
                let within_deadline = deadline::remaining().is_none_or(|left| delay < left);
                if !within_budget || !within_deadline {
                    return Err(failure);
                }
                tracing::debug!(attempt, ?delay, "transient failure; retrying");
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tonic::{Code, Status};

    use super::*;
    use crate::backoff::BackoffKind;

    /// A service answering with `script` in order, recording when it was called.
    fn scripted(
        script: Vec<Result<u32, Code>>,
    ) -> (
        impl Service<(), Response = u32, Error = Status, Future: Send> + Clone + Send + 'static,
        Arc<Mutex<Vec<Instant>>>,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let seen = Arc::clone(&calls);
        let service = tower::service_fn(move |()| {
            seen.lock().unwrap().push(Instant::now());
            let next = script.lock().unwrap().next().unwrap_or(Ok(0));
            async move { next.map_err(|code| Status::new(code, "scripted")) }
        });
        (service, calls)
    }

    fn policy(max_attempts: u32, max_elapsed: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            max_elapsed,
            backoff: Backoff::new(
                BackoffKind::Exponential,
                Duration::from_millis(100),
                Duration::from_secs(1),
            ),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_after_the_backoff() {
        let (service, calls) = scripted(vec![
            Err(Code::Unavailable),
            Err(Code::DeadlineExceeded),
            Ok(7),
        ]);
        let layer = RetryLayer::new(policy(5, Duration::from_secs(10)));
        let start = Instant::now();
        assert_eq!(layer.layer(service).oneshot(()).await.unwrap(), 7);
        let offsets: Vec<_> = calls.lock().unwrap().iter().map(|at| *at - start).collect();
        assert_eq!(
            offsets,
            [
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_millis(300)
            ]
        );
        assert_eq!(layer.retries().load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_transient_code_is_never_retried() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
        ] {
            let (service, calls) = scripted(vec![Err(code), Ok(1)]);
            let err = RetryLayer::new(policy(5, Duration::from_secs(10)))
                .layer(service)
                .oneshot(())
                .await
                .unwrap_err();
            assert_eq!(err.code(), code);
            assert_eq!(calls.lock().unwrap().len(), 1, "{code:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_elapsed_time_and_the_deadline_bound_it() {
        let (service, calls) = scripted(vec![Err(Code::Unavailable); 10]);
        let err = RetryLayer::new(policy(3, Duration::from_secs(10)))
            .layer(service)
            .oneshot(())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(calls.lock().unwrap().len(), 3);

        // 100 + 200 ms fit in 350 ms; the next 400 ms would not.
        let (service, calls) = scripted(vec![Err(Code::Unavailable); 10]);
        RetryLayer::new(policy(10, Duration::from_millis(350)))
            .layer(service)
            .oneshot(())
            .await
            .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 3);

        let (service, calls) = scripted(vec![Err(Code::Unavailable); 10]);
        let retry = RetryLayer::new(policy(10, Duration::from_secs(10))).layer(service);
        deadline::scope(
            Instant::now() + Duration::from_millis(250),
            retry.oneshot(()),
        )
        .await
        .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 2);
    }
}
