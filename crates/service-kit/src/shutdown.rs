//! How a service stops without dropping anything, inside one deadline.
//!
//! ```text
//! SIGTERM ─▶ health NOT_SERVING at once (load balancers and Kubernetes
//!            endpoints take the replica out) ─ still serving ─▶
//!   + SHUTDOWN_DRAIN_DELAY ─▶ stop accepting; requests in flight finish;
//!                             consumers stop fetching and settle what they
//!                             hold; relay rounds finish, leases released
//!   + SHUTDOWN_TIMEOUT ─────▶ the deadline of all of it
//! ```
//!
//! [`ShutdownPlan`] is the setting; [`Stopping`] is one stop as it happens:
//! the signal marks it, every stage waits at most until its one deadline
//! (so stages one after another never add up past it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::env::{Lookup, SettingsError};

/// `SHUTDOWN_DRAIN_DELAY` and `SHUTDOWN_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPlan {
    /// How long the server keeps serving after SIGTERM, NOT_SERVING, so
    /// that whoever routes to it has stopped before it stops accepting.
    pub drain_delay: Duration,
    /// How long everything may then take to finish.
    pub timeout: Duration,
}

impl Default for ShutdownPlan {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }
}

impl ShutdownPlan {
    /// Reads both settings, `defaults` where unset.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Lookup<'_, F>,
        defaults: Self,
    ) -> Result<Self, SettingsError> {
        Ok(Self {
            // Zero is allowed here: no drain delay (local runs).
            drain_delay: env
                .parse(
                    "SHUTDOWN_DRAIN_DELAY",
                    "a duration such as 5s, or 0s for none",
                    |raw| humantime::parse_duration(raw).ok(),
                )?
                .unwrap_or(defaults.drain_delay),
            timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::ZERO, defaults.timeout)?,
        })
    }

    /// The longest a stop takes: what a supervisor's grace period must
    /// allow (plus flushing traces).
    pub fn total(&self) -> Duration {
        self.drain_delay + self.timeout
    }
}

/// One stop as it happens. Cheap to clone; every clone sees the signal.
#[derive(Debug, Clone)]
pub struct Stopping {
    plan: ShutdownPlan,
    signalled: Arc<watch::Sender<Option<Instant>>>,
}

impl Stopping {
    pub fn new(plan: ShutdownPlan) -> Self {
        Self {
            plan,
            signalled: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Marks the signal (the first mark counts): the deadline is set.
    pub fn signal(&self) {
        self.signalled.send_if_modified(|at| {
            if at.is_some() {
                return false;
            }
            *at = Some(Instant::now());
            true
        });
    }

    /// When everything must be done: the signal plus the drain delay and
    /// the timeout, or (no signal: the server ended on its own) the timeout
    /// from now.
    pub fn deadline(&self) -> Instant {
        let signalled = (*self.signalled.borrow()).unwrap_or_else(Instant::now);
        signalled + self.plan.total()
    }

    /// What is left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// Completes when the drain delay after the signal is over: the moment
    /// to stop accepting.
    pub async fn drain_delay_over(&self) {
        let mut signalled = self.signalled.subscribe();
        let at = loop {
            if let Some(at) = *signalled.borrow_and_update() {
                break at;
            }
            if signalled.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::time::sleep_until(at + self.plan.drain_delay).await;
    }

    /// Completes at the deadline, once there is a signal.
    pub async fn deadline_passed(&self) {
        self.drain_delay_over().await;
        tokio::time::sleep_until(self.deadline()).await;
    }

    /// Runs `stage` until it completes or the deadline passes (then it is
    /// dropped and named in a warning); its output if it completed.
    pub async fn within<T>(&self, stage: &str, work: impl Future<Output = T>) -> Option<T> {
        match tokio::time::timeout_at(self.deadline(), work).await {
            Ok(done) => Some(done),
            Err(_) => {
                tracing::warn!(
                    stage,
                    deadline = ?self.plan.total(),
                    "shutdown deadline passed: stopping without waiting for it"
                );
                None
            }
        }
    }
}

/// What to give a server as its shutdown future: waits for `signal`,
/// marks the stop, runs `not_serving` (health NOT_SERVING, probes stopped),
/// then serves on through the drain delay; when it completes the server
/// stops accepting.
pub async fn accept_until_drained(
    signal: impl Future<Output = ()>,
    stopping: Stopping,
    not_serving: impl Future<Output = ()>,
) {
    signal.await;
    stopping.signal();
    tracing::info!(
        drain_delay = ?stopping.plan.drain_delay,
        timeout = ?stopping.plan.timeout,
        "shutting down: NOT_SERVING, serving on through the drain delay"
    );
    not_serving.await;
    stopping.drain_delay_over().await;
    tracing::info!("drain delay over: accepting nothing new, finishing what is in flight");
}

/// Runs `server` to its end, but once the drain delay is over (the server
/// stopped accepting) lets requests in flight run only until the deadline.
pub async fn serve_within<E>(
    server: impl Future<Output = Result<(), E>>,
    stopping: &Stopping,
) -> Result<(), E> {
    tokio::select! {
        served = server => served,
        () = stopping.deadline_passed() => {
            tracing::warn!("shutdown deadline passed, stopping with requests in flight");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(drain: u64, timeout: u64) -> ShutdownPlan {
        ShutdownPlan {
            drain_delay: Duration::from_secs(drain),
            timeout: Duration::from_secs(timeout),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_stage_ends_by_one_deadline_from_the_signal() {
        let stopping = Stopping::new(plan(5, 10));
        let start = Instant::now();
        stopping.signal();
        assert_eq!(stopping.deadline(), start + Duration::from_secs(15));
        stopping.drain_delay_over().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
        // Two slow stages one after another still end at the deadline.
        let slow = || tokio::time::sleep(Duration::from_secs(8));
        assert!(stopping.within("first", slow()).await.is_some());
        assert!(stopping.within("second", slow()).await.is_none());
        assert_eq!(Instant::now(), start + Duration::from_secs(15));
        assert_eq!(stopping.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_signal_counts() {
        let stopping = Stopping::new(plan(1, 2));
        let start = Instant::now();
        stopping.signal();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopping.clone().signal();
        assert_eq!(stopping.deadline(), start + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_ends_first_is_not_waited_for_and_one_that_hangs_is_cut_at_the_deadline()
    {
        let stopping = Stopping::new(plan(1, 2));
        let done: Result<(), ()> = serve_within(async { Ok(()) }, &stopping).await;
        assert!(done.is_ok());
        let start = Instant::now();
        stopping.signal();
        let hung: Result<(), ()> = serve_within(std::future::pending(), &stopping).await;
        assert!(hung.is_ok());
        assert_eq!(Instant::now(), start + Duration::from_secs(3));
    }

    #[test]
    fn settings_are_read_with_their_defaults() {
        let env = |name: &str| (name == "SHUTDOWN_DRAIN_DELAY").then(|| "5s".to_owned());
        let read = ShutdownPlan::from_env(&Lookup(&env), ShutdownPlan::default()).unwrap();
        assert_eq!(read, plan(5, 10));
        let none = |name: &str| (name == "SHUTDOWN_DRAIN_DELAY").then(|| "0s".to_owned());
        let read = ShutdownPlan::from_env(&Lookup(&none), plan(5, 10)).unwrap();
        assert_eq!(read, plan(0, 10), "0s turns the drain delay off");
        assert_eq!(plan(5, 10).total(), Duration::from_secs(15));
        let bad = |name: &str| (name == "SHUTDOWN_TIMEOUT").then(|| "soon".to_owned());
        let err = ShutdownPlan::from_env(&Lookup(&bad), ShutdownPlan::default()).unwrap_err();
        assert_eq!(err.name, "SHUTDOWN_TIMEOUT");
    }
}
