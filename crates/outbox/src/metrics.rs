//! Counters and gauges the relay keeps, ready for export: backlog and
//! oldest-row age per partition, published, acked-as-duplicate and failed
//! publishes, leases held, and the commit→ack latency histogram.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_MICROS: [u64; 16] = [
    500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 5_000_000, 30_000_000,
];

/// A fixed-bucket histogram that many threads record into without locks.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Counts per bucket (the last one is "above every bound").
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Relaxed))
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1); `None`
    /// when empty, `Duration::MAX` when it lies above every bound.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<Duration> {
        let counts = self.bucket_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MICROS
                        .get(index)
                        .map_or(Duration::MAX, |micros| Duration::from_micros(*micros)),
                );
            }
        }
        Some(Duration::MAX)
    }
}

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
