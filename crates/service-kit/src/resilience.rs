//! Reading resilience settings (backoff, breaker) the same way everywhere;
//! each caller names its own variables.

use std::time::Duration;

use ordo_resilience::{Backoff, BackoffKind, BreakerConfig};

use crate::{Lookup, SettingsError};

/// The variables of one backoff policy.
#[derive(Debug, Clone, Copy)]
pub struct BackoffVars {
    /// `fixed`, `linear`, `exponential`, `full-jitter` or `decorrelated-jitter`.
    pub kind: &'static str,
    pub base: &'static str,
    pub max: &'static str,
}

/// The variables of one circuit breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerVars {
    pub window: &'static str,
    pub min_calls: &'static str,
    pub failure_rate: &'static str,
    pub cool_down: &'static str,
    pub half_open_probes: &'static str,
}

/// A backoff policy from `vars`, `default` for what is unset.
pub fn backoff_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    vars: BackoffVars,
    default: Backoff,
) -> Result<Backoff, SettingsError> {
    let kind = env
        .parse(
            vars.kind,
            "fixed, linear, exponential, full-jitter or decorrelated-jitter",
            BackoffKind::parse,
        )?
        .unwrap_or(default.kind);
    Ok(Backoff::new(
        kind,
        env.duration(vars.base, Duration::ZERO, default.base)?,
        env.duration(vars.max, Duration::ZERO, default.max)?,
    ))
}

/// A breaker configuration from `vars`, `default` for what is unset.
pub fn breaker_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    vars: BreakerVars,
    default: BreakerConfig,
) -> Result<BreakerConfig, SettingsError> {
    Ok(BreakerConfig {
        window: env.duration(vars.window, Duration::from_millis(100), default.window)?,
        min_calls: env.number(vars.min_calls, 1..=1_000_000, default.min_calls)?,
        failure_rate: env
            .parse(
                vars.failure_rate,
                "a share above 0 and at most 1, e.g. 0.5",
                |raw| {
                    raw.parse::<f64>()
                        .ok()
                        .filter(|rate| *rate > 0.0 && *rate <= 1.0)
                },
            )?
            .unwrap_or(default.failure_rate),
        cool_down: env.duration(vars.cool_down, Duration::ZERO, default.cool_down)?,
        half_open_probes: env.number(vars.half_open_probes, 1..=1000, default.half_open_probes)?,
        ..default
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::lookup_from;

    const VARS: BreakerVars = BreakerVars {
        window: "B_WINDOW",
        min_calls: "B_MIN",
        failure_rate: "B_RATE",
        cool_down: "B_COOL",
        half_open_probes: "B_PROBES",
    };

    #[test]
    fn reads_a_breaker_and_names_a_bad_value() {
        let lookup = lookup_from(&[("B_RATE", "0.25"), ("B_COOL", "2s")]);
        let config = breaker_from(&Lookup(&lookup), VARS, BreakerConfig::default()).unwrap();
        assert_eq!(config.failure_rate, 0.25);
        assert_eq!(config.cool_down, Duration::from_secs(2));
        let lookup = lookup_from(&[("B_RATE", "1.5")]);
        let err = breaker_from(&Lookup(&lookup), VARS, BreakerConfig::default()).unwrap_err();
        assert_eq!(err.name, "B_RATE");
    }

    #[test]
    fn reads_a_backoff_kind_by_name() {
        let vars = BackoffVars {
            kind: "K",
            base: "BASE",
            max: "MAX",
        };
        let default = Backoff::full_jitter(Duration::from_secs(1), Duration::from_secs(60));
        let lookup = lookup_from(&[("K", "decorrelated-jitter"), ("BASE", "10ms")]);
        let backoff = backoff_from(&Lookup(&lookup), vars, default).unwrap();
        assert_eq!(backoff.kind, BackoffKind::DecorrelatedJitter);
        assert_eq!(backoff.base, Duration::from_millis(10));
        let lookup = lookup_from(&[("K", "random")]);
        assert_eq!(
            backoff_from(&Lookup(&lookup), vars, default)
                .unwrap_err()
                .name,
            "K"
        );
    }
}
