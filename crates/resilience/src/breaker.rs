//! Circuit breaker.
//!
//! ```text
//!            failure rate ≥ threshold over the rolling window
//!            (with at least min_calls calls in it)
//!   CLOSED ───────────────────────────────────────────────▶ OPEN
//!     ▲                                                     │ every call fails fast
//!     │ half_open_probes probes succeeded                    │ for cool_down
//!     │                                                     ▼
//!     └──────────────────────────── HALF_OPEN ◀─────────────┘
//!                                     │ at most half_open_probes calls in flight;
//!                                     │ any probe failing ──▶ OPEN again
//! ```
//!
//! CLOSED means calls flow (the standard meaning; one of the seed documents
//! names the states the other way round). Only transient failures count
//! against the breaker: an INVALID_ARGUMENT proves the other side answers.
//! The window is `buckets` slices of `window / buckets`, so old calls age
//! out in steps. Every transition is logged and published on a
//! [`tokio::sync::watch`] channel (health, metrics).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::classify::Failure;

/// When the breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// The rolling window failure rates are computed over.
    pub window: Duration,
    /// Slices of the window (old calls age out one slice at a time).
    pub buckets: u32,
    /// Calls the window must hold before the rate may open the breaker.
    pub min_calls: u32,
    /// Failure share (0–1] that opens the breaker.
    pub failure_rate: f64,
    /// How long OPEN fails fast before letting probes through.
    pub cool_down: Duration,
    /// Probes in flight at once in HALF_OPEN, and successes that close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            buckets: 10,
            min_calls: 10,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// The breaker's state as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open: a gauge value.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    window: VecDeque<Bucket>,
}

/// A circuit breaker shared by every call to one dependency.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    state: watch::Sender<BreakerState>,
    openings: AtomicU64,
}

impl CircuitBreaker {
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                window: VecDeque::new(),
            }),
            state: watch::Sender::new(BreakerState::Closed),
            openings: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state now (an OPEN breaker past its cool-down reads HALF_OPEN
    /// only once a call has tried it).
    pub fn state(&self) -> BreakerState {
        *self.state.borrow()
    }

    /// Follows the state.
    pub fn watch(&self) -> watch::Receiver<BreakerState> {
        self.state.subscribe()
    }

    /// Times the breaker opened (a metric).
    pub fn openings(&self) -> u64 {
        self.openings.load(Ordering::Relaxed)
    }

    /// While OPEN and cooling down: how long until it half-opens. Callers
    /// that can wait (a relay pausing its partitions) ask before working.
    pub fn open_remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        match self.lock().phase {
            Phase::Open { until } if now < until => Some(until - now),
            _ => None,
        }
    }

    /// Lets a call through, or says how long until the breaker half-opens.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        let now = Instant::now();
        let mut inner = self.lock();
        match &mut inner.phase {
            Phase::Closed => Ok(self.permit(false)),
            Phase::Open { until } if now < *until => Err(*until - now),
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                };
                self.publish(BreakerState::HalfOpen);
                Ok(self.permit(true))
            }
            Phase::HalfOpen { in_flight, .. }
                if *in_flight < self.config.half_open_probes.max(1) =>
            {
                *in_flight += 1;
                Ok(self.permit(true))
            }
            Phase::HalfOpen { .. } => Err(self.config.cool_down / 10),
        }
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            probe,
            settled: false,
        }
    }

    fn settle(&self, probe: bool, outcome: Option<bool>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let config = self.config;
        match (&mut inner.phase, probe) {
            (
                Phase::HalfOpen {
                    in_flight,
                    successes,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Some(true) => {
                        *successes += 1;
                        if *successes >= config.half_open_probes.max(1) {
                            inner.phase = Phase::Closed;
                            inner.window.clear();
                            self.publish(BreakerState::Closed);
                        }
                    }
                    Some(false) => {
                        inner.phase = Phase::Open {
                            until: now + config.cool_down,
                        };
                        self.openings.fetch_add(1, Ordering::Relaxed);
                        self.publish(BreakerState::Open);
                    }
                    None => {}
                }
            }
            (Phase::Closed, false) => {
                let Some(success) = outcome else { return };
                record(&mut inner.window, &config, now, success);
                let (calls, failures) = inner
                    .window
                    .iter()
                    .fold((0, 0), |(calls, failures), bucket| {
                        (calls + bucket.calls, failures + bucket.failures)
                    });
                if calls >= config.min_calls
                    && f64::from(failures) >= config.failure_rate * f64::from(calls)
                {
                    inner.phase = Phase::Open {
                        until: now + config.cool_down,
                    };
                    inner.window.clear();
                    self.openings.fetch_add(1, Ordering::Relaxed);
                    self.publish(BreakerState::Open);
                }
            }
            // A call admitted in another phase than the current one: its
            // outcome describes a past state and changes nothing.
            _ => {}
        }
    }

    fn publish(&self, state: BreakerState) {
        match state {
            BreakerState::Open => {
                tracing::warn!(breaker = self.name, "circuit breaker open: failing fast")
            }
            BreakerState::HalfOpen => {
                tracing::info!(breaker = self.name, "circuit breaker half-open: probing")
            }
            BreakerState::Closed => tracing::info!(breaker = self.name, "circuit breaker closed"),
        }
        self.state.send_replace(state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn record(window: &mut VecDeque<Bucket>, config: &BreakerConfig, now: Instant, success: bool) {
    let slice = config.window / config.buckets.max(1);
    while window
        .front()
        .is_some_and(|bucket| now.duration_since(bucket.start) >= config.window)
    {
        window.pop_front();
    }
    if window
        .back()
        .is_none_or(|bucket| now.duration_since(bucket.start) >= slice)
    {
        window.push_back(Bucket {
            start: now,
            calls: 0,
            failures: 0,
        });
    }
    if let Some(bucket) = window.back_mut() {
        bucket.calls += 1;
        bucket.failures += u32::from(!success);
    }
}

/// A call let through; report how it went with [`Permit::record`]. Dropped
/// unrecorded (the call was cancelled), it counts for nothing.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// `success`: the dependency answered (any non-transient outcome).
    pub fn record(mut self, success: bool) {
        self.settled = true;
        self.breaker.settle(self.probe, Some(success));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.probe, None);
        }
    }
}

/// Puts a [`CircuitBreaker`] in front of a service.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl CircuitBreakerLayer {
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker {
            inner,
            breaker: Arc::clone(&self.breaker),
        }
    }
}

/// See [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct Breaker<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

impl<S, Req> Service<Req> for Breaker<S>
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
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(retry_after) => {
                let failure = S::Error::circuit_open(self.breaker.name(), retry_after);
                return Box::pin(async move { Err(failure) });
            }
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = call.await;
            permit.record(
                answer
                    .as_ref()
                    .map_or_else(|failure| !failure.is_transient(), |_| true),
            );
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};
    use tower::ServiceExt as _;

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            buckets: 10,
            min_calls: 4,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn outcome(breaker: &Arc<CircuitBreaker>, success: bool) {
        breaker.try_acquire().unwrap().record(success);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_failure_rate_once_the_window_has_enough_calls() {
        let breaker = CircuitBreaker::new("payments", config());
        outcome(&breaker, false);
        outcome(&breaker, false);
        outcome(&breaker, false);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "3 calls are below min_calls"
        );
        outcome(&breaker, true);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire().unwrap_err(), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(breaker.try_acquire().unwrap_err(), Duration::from_secs(3));
        assert_eq!(breaker.open_remaining(), Some(Duration::from_secs(3)));
        assert_eq!(breaker.openings(), 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            breaker.open_remaining(),
            None,
            "cooled down: the next call probes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_age_out_of_the_window() {
        let breaker = CircuitBreaker::new("payments", config());
        for _ in 0..3 {
            outcome(&breaker, false);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        outcome(&breaker, false);
        outcome(&breaker, true);
        outcome(&breaker, true);
        outcome(&breaker, true);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_close_it_or_a_failing_probe_reopens_it() {
        let breaker = CircuitBreaker::new("payments", config());
        let mut states = breaker.watch();
        for _ in 0..4 {
            outcome(&breaker, false);
        }
        assert_eq!(*states.borrow_and_update(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;

        // Half-open: two probes at most; a third call still fails fast.
        let first = breaker.try_acquire().unwrap();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let second = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err());
        first.record(true);
        second.record(false);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens it"
        );
        assert_eq!(breaker.openings(), 2);

        tokio::time::advance(Duration::from_secs(5)).await;
        outcome(&breaker, true);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        outcome(&breaker, true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Closed again with a clean window: one failure does not reopen it.
        outcome(&breaker, false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_fails_fast_while_open_and_counts_only_transient_failures() {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&calls);
        let code = Arc::new(Mutex::new(Code::InvalidArgument));
        let answer = Arc::clone(&code);
        let inner = tower::service_fn(move |()| {
            seen.fetch_add(1, Ordering::Relaxed);
            let code = *answer.lock().unwrap();
            async move { Err::<(), _>(Status::new(code, "scripted")) }
        });
        let breaker = CircuitBreaker::new("payments", config());
        let service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(inner);
        for _ in 0..10 {
            let _ = service.clone().oneshot(()).await;
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "INVALID_ARGUMENT is an answer"
        );
        *code.lock().unwrap() = Code::Unavailable;
        // 10 failures among 20 calls: the rate reaches 0.5.
        for _ in 0..10 {
            let _ = service.clone().oneshot(()).await;
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let before = calls.load(Ordering::Relaxed);
        let refused = service.clone().oneshot(()).await.unwrap_err();
        assert_eq!(calls.load(Ordering::Relaxed), before, "no call while open");
        assert_eq!(
            crate::classify::circuit_open_retry_after(&refused),
            Some(Duration::from_secs(5))
        );
    }
}
