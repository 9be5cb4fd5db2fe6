//! Server-side concurrency limit with load shedding.
//!
//! At most `limit` requests are in flight; a request arriving when all
//! slots are taken is answered at once with RESOURCE_EXHAUSTED (a gRPC
//! status on an HTTP 200, as gRPC requires) instead of waiting in an
//! unbounded queue, so the requests already accepted keep their latency
//! and the caller can back off or go elsewhere. A slot is held until the
//! response (its headers) is ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Limits requests in flight to `limit`, shedding the rest.
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    slots: Arc<Semaphore>,
    shed: Arc<AtomicU64>,
}

impl LoadShedLayer {
    pub fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            shed: Arc::default(),
        }
    }

    /// Requests shed so far (a metric).
    pub fn shed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shed)
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            slots: Arc::clone(&self.slots),
            shed: Arc::clone(&self.shed),
        }
    }
}

/// See [`LoadShedLayer`].
#[derive(Debug, Clone)]
pub struct LoadShed<S> {
    inner: S,
    slots: Arc<Semaphore>,
    shed: Arc<AtomicU64>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for LoadShed<S>
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
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.shed.fetch_add(1, Ordering::Relaxed);
            let busy = tonic::Status::resource_exhausted(
                "server busy: too many requests in flight; retry with backoff",
            );
            return Box::pin(async move { Ok(busy.into_http()) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(slot);
            response
        })
    }
}
