//! Server-side request deadline.
//!
//! A request's deadline is the sooner of the caller's `grpc-timeout` and
//! the server's own request timeout. The handler runs with it as the
//! current [`crate::deadline`] (so the calls it makes downstream carry what
//! is left), and if it passes first the caller gets DEADLINE_EXCEEDED and
//! the handler is dropped.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::deadline;

/// Bounds every request by `max` and the caller's `grpc-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadlineLayer {
    max: Duration,
}

impl RequestDeadlineLayer {
    pub fn new(max: Duration) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for RequestDeadlineLayer {
    type Service = RequestDeadline<S>;

    fn layer(&self, inner: S) -> RequestDeadline<S> {
        RequestDeadline {
            inner,
            max: self.max,
        }
    }
}

/// See [`RequestDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct RequestDeadline<S> {
    inner: S,
    max: Duration,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestDeadline<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(deadline::parse_grpc_timeout);
        let budget = asked.map_or(self.max, |asked| asked.min(self.max));
        let deadline_at = Instant::now() + budget;
        let handled = deadline::scope(deadline_at, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline_at, handled).await {
                Ok(response) => response,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the request's deadline ({} ms) passed",
                    budget.as_millis()
                ))
                .into_http()),
            }
        })
    }
}
