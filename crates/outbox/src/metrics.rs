//! Counters and gauges the relay keeps, ready for export: backlog and
//! oldest-row age per partition, published, acked-as-duplicate and failed
//! publishes, leases held, and the commit→ack latency histogram.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ordo_telemetry::metrics::Exposition;

pub use ordo_telemetry::metrics::{LATENCY_BUCKETS_MICROS, LatencyHistogram};

/// Backlog of one partition, as last measured, and whether its relay
/// actor runs in this replica.
#[derive(Debug, Default)]
pub struct PartitionGauges {
    pub backlog: AtomicI64,
    pub oldest_age_millis: AtomicI64,
    pub actor_running: AtomicBool,
}

/// Every figure one relay replica keeps.
#[derive(Debug)]
pub struct RelayMetrics {
    pub partitions: Vec<PartitionGauges>,
    pub published: AtomicU64,
    pub duplicates: AtomicU64,
    pub failed: AtomicU64,
    pub leases_held: AtomicI64,
    pub actor_restarts: AtomicU64,
    /// Claim queries run, and those that found no row.
    pub claims: AtomicU64,
    pub empty_claims: AtomicU64,
    /// Statements those claims took (claims made together share one).
    pub claim_statements: AtomicU64,
    /// Rows this replica parked (unpublishable), and the rows parked in
    /// the table as last measured.
    pub parked: AtomicU64,
    pub parked_rows: AtomicI64,
    /// Rounds abandoned (lease view run out) or aborted (lease lost) mid-way.
    pub fenced_rounds: AtomicU64,
    pub commit_to_ack: LatencyHistogram,
}

impl RelayMetrics {
    pub fn new(partitions: u32) -> Self {
        Self {
            partitions: (0..partitions)
                .map(|_| PartitionGauges::default())
                .collect(),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            leases_held: AtomicI64::new(0),
            actor_restarts: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            empty_claims: AtomicU64::new(0),
            claim_statements: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            parked_rows: AtomicI64::new(0),
            fenced_rounds: AtomicU64::new(0),
            commit_to_ack: LatencyHistogram::default(),
        }
    }

    /// Sets a partition's gauges.
    pub fn set_backlog(&self, partition: i32, rows: i64, oldest_age: Duration) {
        if let Some(gauges) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
        {
            gauges.backlog.store(rows, Relaxed);
            gauges.oldest_age_millis.store(
                i64::try_from(oldest_age.as_millis()).unwrap_or(i64::MAX),
                Relaxed,
            );
        }
    }

    pub(crate) fn set_actor_running(&self, partition: i32, running: bool) {
        if let Some(gauges) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
        {
            gauges
                .actor_running
                .store(running, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Partitions whose relay actor is alive in this replica right now.
    pub fn running_actors(&self) -> std::collections::BTreeSet<i32> {
        (0_i32..)
            .zip(&self.partitions)
            .filter(|(_, gauges)| {
                gauges
                    .actor_running
                    .load(std::sync::atomic::Ordering::SeqCst)
            })
            .map(|(partition, _)| partition)
            .collect()
    }

    /// Rows waiting over every partition, as last measured.
    pub fn total_backlog(&self) -> i64 {
        self.partitions
            .iter()
            .map(|p| p.backlog.load(Relaxed))
            .sum()
    }
}

impl RelayMetrics {
    /// The relay's families: backlog and oldest-row age per partition,
    /// published / duplicate-acked / failed publishes, leases held, actor
    /// restarts, and the commit→ack latency histogram.
    pub fn expose(&self, out: &mut Exposition) {
        let partitions: Vec<String> = (0..self.partitions.len()).map(|p| p.to_string()).collect();
        let labels: Vec<[(&str, &str); 1]> = partitions
            .iter()
            .map(|partition| [("partition", partition.as_str())])
            .collect();
        out.gauge(
            "ordo_outbox_backlog_rows",
            "Rows waiting in the outbox, per partition (as last measured).",
            labels
                .iter()
                .zip(&self.partitions)
                .map(|(labels, gauges)| (&labels[..], gauges.backlog.load(Relaxed) as f64)),
        );
        out.gauge(
            "ordo_outbox_oldest_row_age_seconds",
            "Age of the oldest waiting row, per partition (as last measured).",
            labels.iter().zip(&self.partitions).map(|(labels, gauges)| {
                (
                    &labels[..],
                    gauges.oldest_age_millis.load(Relaxed) as f64 / 1000.0,
                )
            }),
        );
        let none: &[(&str, &str)] = &[];
        out.counter(
            "ordo_outbox_published_total",
            "Events JetStream stored.",
            [(none, self.published.load(Relaxed) as f64)],
        );
        let claims = self.claims.load(Relaxed);
        let empty = self.empty_claims.load(Relaxed);
        out.counter(
            "ordo_outbox_claims_total",
            "Claim queries the relay ran, by whether they found rows.",
            [
                (
                    &[("result", "rows")][..],
                    claims.saturating_sub(empty) as f64,
                ),
                (&[("result", "empty")][..], empty as f64),
            ],
        );
        out.counter(
            "ordo_outbox_claim_statements_total",
            "Statements the relay's claims took: the claims of partitions that come at once share one.",
            [(none, self.claim_statements.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_outbox_duplicate_acks_total",
            "Publishes JetStream acked as duplicates (a re-publish inside the window).",
            [(none, self.duplicates.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_outbox_publish_failures_total",
            "Publishes that failed or were refused by the open breaker; their rows wait.",
            [(none, self.failed.load(Relaxed) as f64)],
        );
        out.gauge(
            "ordo_outbox_leases_held",
            "Outbox partitions this replica holds.",
            [(none, self.leases_held.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_outbox_parked_total",
            "Rows this replica parked: they can never be published as they are (see ListParkedEvents).",
            [(none, self.parked.load(Relaxed) as f64)],
        );
        out.gauge(
            "ordo_outbox_parked_rows",
            "Rows parked in the outbox_parked table (as last measured); their aggregates wait behind them.",
            [(none, self.parked_rows.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_outbox_fenced_rounds_total",
            "Relay rounds abandoned or aborted because the partition's lease ran out under them or was lost (a pause, a lost database).",
            [(none, self.fenced_rounds.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_outbox_actor_restarts_total",
            "Relay actors restarted by their supervisor.",
            [(none, self.actor_restarts.load(Relaxed) as f64)],
        );
        out.histogram(
            "ordo_outbox_commit_to_ack_seconds",
            "Time from a row's commit to JetStream's ack of its event.",
            [(none, &self.commit_to_ack)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_upper_bound(0.5), None);
        for _ in 0..98 {
            histogram.record(Duration::from_micros(800));
        }
        histogram.record(Duration::from_millis(9));
        histogram.record(Duration::from_secs(60));
        assert_eq!(histogram.count(), 100);
        assert_eq!(
            histogram.quantile_upper_bound(0.5),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            histogram.quantile_upper_bound(0.99),
            Some(Duration::from_millis(10))
        );
        assert_eq!(histogram.quantile_upper_bound(1.0), Some(Duration::MAX));
    }
}
