//! How long to wait before retry n (1 for the first retry).
//!
//! | kind | delay before retry n |
//! |---|---|
//! | fixed | base |
//! | linear | base × n |
//! | exponential | base × 2^(n-1) |
//! | full jitter | uniform in [0, base × 2^(n-1)] |
//! | decorrelated jitter | uniform in [base, 3 × previous delay] (previous = base at first) |
//!
//! Every delay is capped at `max`. Jitter spreads retries of many clients
//! that failed together, so they do not strike together again.

use std::time::Duration;

/// The shape of the delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffKind {
    Fixed,
    Linear,
    Exponential,
    FullJitter,
    DecorrelatedJitter,
}

impl BackoffKind {
    /// The name settings use: `fixed`, `linear`, `exponential`,
    /// `full-jitter`, `decorrelated-jitter`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Linear => "linear",
            Self::Exponential => "exponential",
            Self::FullJitter => "full-jitter",
            Self::DecorrelatedJitter => "decorrelated-jitter",
        }
    }

    /// Parses [`BackoffKind::name`].
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Fixed,
            Self::Linear,
            Self::Exponential,
            Self::FullJitter,
            Self::DecorrelatedJitter,
        ]
        .into_iter()
        .find(|kind| kind.name() == raw)
    }
}

/// A backoff policy: kind, base delay, cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `max` below `base` is raised to `base`.
    pub fn new(kind: BackoffKind, base: Duration, max: Duration) -> Self {
        Self {
            kind,
            base,
            max: max.max(base),
        }
    }

    /// Exponential with full jitter, the usual choice.
    pub fn full_jitter(base: Duration, max: Duration) -> Self {
        Self::new(BackoffKind::FullJitter, base, max)
    }

    /// The delays of retries 1, 2, 3, … in order.
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: *self,
            retry: 0,
            previous: self.base,
        }
    }

    /// The delay before retry `n` alone (decorrelated jitter, which depends
    /// on the previous delay, assumes each previous one was the largest).
    pub fn delay(&self, n: u32) -> Duration {
        let previous = match self.kind {
            BackoffKind::DecorrelatedJitter => self.cap(
                self.base
                    .saturating_mul(3u32.saturating_pow(n.saturating_sub(2))),
            ),
            _ => self.base,
        };
        self.delay_after(n, previous)
    }

    /// The largest delay retry `n` can get.
    pub fn ceiling(&self, n: u32) -> Duration {
        let n = n.max(1);
        match self.kind {
            BackoffKind::Fixed => self.base,
            BackoffKind::Linear => self.cap(self.base.saturating_mul(n)),
            BackoffKind::Exponential | BackoffKind::FullJitter => {
                self.cap(exponential(self.base, n))
            }
            BackoffKind::DecorrelatedJitter => {
                self.cap(self.base.saturating_mul(3u32.saturating_pow(n - 1)))
            }
        }
    }

    fn delay_after(&self, n: u32, previous: Duration) -> Duration {
        let n = n.max(1);
        match self.kind {
            BackoffKind::Fixed | BackoffKind::Linear | BackoffKind::Exponential => self.ceiling(n),
            BackoffKind::FullJitter => uniform(Duration::ZERO, self.ceiling(n)),
            BackoffKind::DecorrelatedJitter => self.cap(uniform(
                self.base,
                previous.saturating_mul(3).max(self.base),
            )),
        }
    }

    fn cap(&self, delay: Duration) -> Duration {
        delay.min(self.max)
    }
}

/// The delays of successive retries.
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    retry: u32,
    previous: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let delay = self.backoff.delay_after(self.retry, self.previous);
        self.previous = delay;
        Some(delay)
    }
}

fn exponential(base: Duration, n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings)
}

fn uniform(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let low_ns = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high_ns = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(low_ns..=high_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn first(backoff: Backoff, count: usize) -> Vec<Duration> {
        backoff.delays().take(count).collect()
    }

    #[test]
    fn deterministic_kinds_follow_their_formula_up_to_the_cap() {
        let fixed = Backoff::new(BackoffKind::Fixed, 100 * MS, 1000 * MS);
        assert_eq!(first(fixed, 3), [100 * MS; 3]);
        let linear = Backoff::new(BackoffKind::Linear, 100 * MS, 250 * MS);
        assert_eq!(first(linear, 4), [100 * MS, 200 * MS, 250 * MS, 250 * MS]);
        let exponential = Backoff::new(BackoffKind::Exponential, 100 * MS, 1000 * MS);
        assert_eq!(
            first(exponential, 6),
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(exponential.delay(u32::MAX), 1000 * MS);
    }

    #[test]
    fn full_jitter_stays_below_the_exponential_ceiling_and_spreads() {
        let backoff = Backoff::full_jitter(100 * MS, 1000 * MS);
        for _ in 0..200 {
            for (n, delay) in (1..).zip(backoff.delays().take(6)) {
                assert!(delay <= backoff.ceiling(n), "retry {n}: {delay:?}");
            }
        }
        let third: Vec<_> = (0..200).map(|_| backoff.delay(3)).collect();
        assert!(third.iter().any(|delay| *delay < 200 * MS));
        assert!(third.iter().any(|delay| *delay > 200 * MS));
    }

    #[test]
    fn decorrelated_jitter_grows_from_its_previous_delay_within_bounds() {
        let backoff = Backoff::new(BackoffKind::DecorrelatedJitter, 100 * MS, 2000 * MS);
        for _ in 0..200 {
            let mut previous = 100 * MS;
            for delay in backoff.delays().take(8) {
                assert!(delay >= 100 * MS && delay <= 2000 * MS, "{delay:?}");
                assert!(delay <= previous * 3, "{delay:?} after {previous:?}");
                previous = delay;
            }
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for kind in [
            "fixed",
            "linear",
            "exponential",
            "full-jitter",
            "decorrelated-jitter",
        ] {
            assert_eq!(BackoffKind::parse(kind).map(BackoffKind::name), Some(kind));
        }
        assert_eq!(BackoffKind::parse("random"), None);
    }
}
