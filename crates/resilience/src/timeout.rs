//! Client-side timeout: a call gets the smaller of its own timeout and what
//! is left of the caller's deadline, runs under that as its deadline (so the
//! request it sends carries it on), and fails as timed out when it passes.
//!
//! States: none — each call either answers within its budget or becomes
//! [`Failure::timed_out`]; a budget already spent fails at once.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::classify::Failure;
use crate::deadline;

/// Bounds every call by `per_call` and the caller's deadline.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    per_call: Duration,
}

impl TimeoutLayer {
    pub fn new(per_call: Duration) -> Self {
        Self { per_call }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            per_call: self.per_call,
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    per_call: Duration,
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Error: Failure + Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let budget = deadline::remaining().map_or(self.per_call, |left| left.min(self.per_call));
        if budget.is_zero() {
            return Box::pin(async move { Err(S::Error::timed_out(budget)) });
        }
        let deadline_at = Instant::now() + budget;
        let call = deadline::scope(deadline_at, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline_at, call).await {
                Ok(answer) => answer,
                Err(_) => Err(S::Error::timed_out(budget)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_callers_deadline_reaches_the_call_reduced_by_time_spent() {
        let seen = tower::service_fn(|()| async { Ok::<_, Status>(deadline::remaining()) });
        let service = TimeoutLayer::new(Duration::from_secs(2)).layer(seen);
        let start = Instant::now();
        let left = deadline::scope(start + Duration::from_millis(200), async {
            tokio::time::advance(Duration::from_millis(50)).await;
            service.oneshot(()).await
        })
        .await
        .unwrap();
        assert_eq!(left, Some(Duration::from_millis(150)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out_and_a_spent_budget_fails_at_once() {
        let slow = tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Status>(())
        });
        let service = TimeoutLayer::new(Duration::from_millis(300)).layer(slow);
        let started = Instant::now();
        let err = service.clone().oneshot(()).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        let spent = deadline::scope(Instant::now(), service.oneshot(()))
            .await
            .unwrap_err();
        assert_eq!(spent.code(), Code::DeadlineExceeded);
    }
}
