//! The fault knobs: what the simulator does wrong, on purpose.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// Largest added latency.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);
/// Default decline limit, in minor units.
pub const DEFAULT_DECLINE_ABOVE_MINOR: i64 = 1_000_000;

/// The knobs in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Added to every Authorize, Refund and Void.
    pub latency: Duration,
    /// Share of Authorize, Refund and Void calls failing UNAVAILABLE, 0.0-1.0.
    pub error_rate: f64,
    /// Every Authorize, Refund and Void fails UNAVAILABLE.
    pub outage: bool,
    /// Authorizations above this amount are declined.
    pub decline_above_minor: i64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            outage: false,
            decline_above_minor: DEFAULT_DECLINE_ABOVE_MINOR,
        }
    }
}

/// What a call should suffer before it may have an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Fail: the provider is down.
    Outage,
    /// Fail: a transient error.
    Transient,
    /// Go ahead.
    None,
}

impl Faults {
    /// Checks each knob; the error names the first one out of range.
    pub fn validated(self) -> Result<Self, (&'static str, String)> {
        if self.latency > MAX_LATENCY {
            return Err((
                "latency_ms",
                format!("must be at most {}", MAX_LATENCY.as_millis()),
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(("error_rate", "must be 0.0-1.0".to_owned()));
        }
        if self.decline_above_minor < 0 {
            return Err(("decline_above_minor", "must be at least 0".to_owned()));
        }
        Ok(self)
    }

    /// Draws whether this call fails.
    pub fn strike(&self) -> Strike {
        if self.outage {
            Strike::Outage
        } else if self.error_rate > 0.0 && fastrand::f64() < self.error_rate {
            Strike::Transient
        } else {
            Strike::None
        }
    }
}

/// The knobs, shared and changeable at run time.
#[derive(Debug, Default)]
pub struct FaultSwitch(RwLock<Faults>);

impl FaultSwitch {
    pub fn new(faults: Faults) -> Self {
        Self(RwLock::new(faults))
    }

    pub fn get(&self) -> Faults {
        *self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, faults: Faults) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = faults;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_range_checked() {
        let ok = Faults::default();
        assert!(ok.validated().is_ok());
        let bad = Faults {
            error_rate: 1.5,
            ..ok
        };
        assert_eq!(bad.validated().unwrap_err().0, "error_rate");
        let bad = Faults {
            decline_above_minor: -1,
            ..ok
        };
        assert_eq!(bad.validated().unwrap_err().0, "decline_above_minor");
        let bad = Faults {
            latency: Duration::from_secs(61),
            ..ok
        };
        assert_eq!(bad.validated().unwrap_err().0, "latency_ms");
    }

    #[test]
    fn strikes_follow_the_knobs() {
        let calm = Faults::default();
        assert!((0..1000).all(|_| calm.strike() == Strike::None));
        let down = Faults {
            outage: true,
            ..calm
        };
        assert_eq!(down.strike(), Strike::Outage);
        let flaky = Faults {
            error_rate: 1.0,
            ..calm
        };
        assert_eq!(flaky.strike(), Strike::Transient);
    }
}
