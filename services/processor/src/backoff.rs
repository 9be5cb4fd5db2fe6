//! Exponential backoff with full jitter: the delay before retry n (1 for
//! the first retry) is uniform in [0, min(max, base × 2^(n-1))], so replicas
//! retrying the same failure spread out instead of striking together.

use std::time::Duration;

/// An exponential backoff policy with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `max` below `base` is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
        }
    }

    /// The ceiling for retry `n` (1-based): `min(max, base × 2^(n-1))`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// A random delay for retry `n`, never below a millisecond.
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(fastrand::u64(1..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_jitters_below_it() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(400));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        let delays: Vec<_> = (0..200).map(|_| backoff.delay(3)).collect();
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_millis(400))
        );
        assert!(
            delays
                .iter()
                .any(|delay| *delay < Duration::from_millis(200))
        );
        assert!(
            delays
                .iter()
                .any(|delay| *delay > Duration::from_millis(200))
        );
    }
}
