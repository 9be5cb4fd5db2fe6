//! `grpc.health.v1` statuses that follow probes of what a service depends on.
//!
//! Each dependency has a service name of its own — [`DEPS_DATABASE`],
//! [`DEPS_NATS`], [`DEPS_PAYMENTS`] — SERVING while its probe succeeds and
//! NOT_SERVING while it fails (a dependency behind a circuit breaker fails
//! its probe while the breaker is open). The service as a whole (`""`) and
//! its API follow only what it needs to accept work: the order service
//! keeps taking orders while NATS is down, since the outbox holds them.
//! [`LIVENESS`] is SERVING for as long as the process runs.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The service's own PostgreSQL database.
pub const DEPS_DATABASE: &str = "ordo.deps.database";
/// NATS JetStream.
pub const DEPS_NATS: &str = "ordo.deps.nats";
/// The payment provider.
pub const DEPS_PAYMENTS: &str = "ordo.deps.payments";
/// SERVING from start-up to shutdown, whatever the dependencies do: what a
/// liveness probe asks, so an outage elsewhere never restarts the pod.
pub const LIVENESS: &str = "ordo.liveness";

/// Reports [`LIVENESS`] SERVING.
pub async fn alive(reporter: &HealthReporter) {
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
}

/// Runs `check` every `interval` (each run bounded by the larger of the
/// interval and a second) and publishes whether it passed. Starts `false`;
/// logs each change, and why a failing check fails (`Err(reason)`);
/// stops once every receiver is gone.
pub fn probe<F, Fut>(what: &'static str, interval: Duration, check: F) -> watch::Receiver<bool>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let (up_tx, up_rx) = watch::channel(false);
    let bound = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last: Option<Result<(), String>> = None;
        loop {
            let outcome = tokio::time::timeout(bound, check())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {bound:?}")));
            if last.as_ref() != Some(&outcome) {
                match &outcome {
                    Ok(()) => tracing::info!(dependency = what, "dependency reachable"),
                    Err(reason) => {
                        tracing::warn!(dependency = what, %reason, "dependency unreachable");
                    }
                }
            }
            let up = outcome.is_ok();
            last = Some(outcome);
            up_tx.send_if_modified(|current| std::mem::replace(current, up) != up);
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = up_tx.closed() => return,
            }
        }
    });
    up_rx
}

/// `Ok` when `up`, else `Err(reason)`: a check that has no more to say.
pub fn passed(up: bool, reason: &str) -> Result<(), String> {
    if up { Ok(()) } else { Err(reason.to_owned()) }
}

/// Keeps every name in `names` SERVING while `up` reads true and
/// NOT_SERVING otherwise, until `up`'s probe ends or the task is aborted.
pub async fn follow(
    reporter: HealthReporter,
    names: Vec<&'static str>,
    mut up: watch::Receiver<bool>,
) {
    loop {
        let status = if *up.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &names {
            reporter.set_service_status(*name, status).await;
        }
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// Every name NOT_SERVING, then cleared, which ends open `Watch` streams so
/// they do not hold shutdown.
pub async fn close(mut reporter: HealthReporter, names: &[&'static str]) {
    for name in names {
        reporter
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
        reporter.clear_service_status(name).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_probe_publishes_changes() {
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        let mut up = probe("thing", Duration::from_millis(10), move || {
            let healthy = flag.load(Ordering::Relaxed);
            async move { passed(healthy, "switched off") }
        });
        up.wait_for(|up| *up).await.unwrap();
        healthy.store(false, Ordering::Relaxed);
        up.wait_for(|up| !*up).await.unwrap();
    }
}
