//! Reading settings by name: an unset or blank one is `None`, a bad one is
//! a [`SettingsError`] that names it, shows it (secrets redacted) and says
//! what fits. Services read through a lookup function, so tests never touch
//! the process environment.

use std::time::Duration;

/// A setting that could not be used: names it, shows it, says what fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct SettingsError {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
}

/// Reads one named setting at a time through a lookup function.
pub struct Lookup<'a, F>(pub &'a F);

impl<F: Fn(&str) -> Option<String>> Lookup<'_, F> {
    /// `Ok(None)` when unset or blank, `Ok(Some(..))` when `parser` accepts
    /// the trimmed value, else an error naming `name` and `expected`.
    pub fn parse<T>(
        &self,
        name: &'static str,
        expected: &str,
        parser: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        let Some(value) = (self.0)(name).filter(|value| !value.trim().is_empty()) else {
            return Ok(None);
        };
        parser(value.trim()).map(Some).ok_or_else(|| SettingsError {
            name,
            value: redact_password(&value),
            expected: expected.to_owned(),
        })
    }

    /// A duration such as `500ms` or `2s`, at least `min`; `default` when unset.
    pub fn duration(
        &self,
        name: &'static str,
        min: Duration,
        default: Duration,
    ) -> Result<Duration, SettingsError> {
        let expected = if min.is_zero() {
            "a duration such as 500ms or 2s".to_owned()
        } else {
            format!(
                "a duration of at least {}, such as 2s",
                humantime::format_duration(min)
            )
        };
        Ok(self
            .parse(name, &expected, |raw| {
                parse_duration(raw).filter(|duration| *duration >= min)
            })?
            .unwrap_or(default))
    }

    /// A whole number within `range`; `default` when unset.
    pub fn number<T>(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, SettingsError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let expected = format!("a whole number {}-{}", range.start(), range.end());
        Ok(self
            .parse(name, &expected, |raw| {
                raw.parse().ok().filter(|n| range.contains(n))
            })?
            .unwrap_or(default))
    }

    /// `true` or `false` (or 1/0, yes/no, on/off); `default` when unset.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, SettingsError> {
        Ok(self
            .parse(name, "true or false", parse_bool)?
            .unwrap_or(default))
    }

    /// A `postgres://` URL; `default` when unset.
    pub fn postgres_url(&self, name: &'static str, default: &str) -> Result<String, SettingsError> {
        Ok(self
            .parse(name, "a postgres:// URL", |raw| {
                (raw.starts_with("postgres://") || raw.starts_with("postgresql://"))
                    .then(|| raw.to_owned())
            })?
            .unwrap_or_else(|| default.to_owned()))
    }

    /// A comma-separated list of `nats://` (or `tls://`) URLs; `default` when unset.
    pub fn nats_url(&self, name: &'static str, default: &str) -> Result<String, SettingsError> {
        Ok(self
            .parse(
                name,
                "nats:// or tls:// URLs, comma-separated (e.g. nats://a:4222,nats://b:4222)",
                |raw| crate::nats::servers(raw).ok().map(|_| raw.to_owned()),
            )?
            .unwrap_or_else(|| default.to_owned()))
    }

    /// An `http://` (or `https://`) URL; `default` when unset.
    pub fn http_url(&self, name: &'static str, default: &str) -> Result<String, SettingsError> {
        Ok(self
            .parse(
                name,
                "an http:// URL such as http://127.0.0.1:50053",
                |raw| {
                    (raw.starts_with("http://") || raw.starts_with("https://"))
                        .then(|| raw.to_owned())
                },
            )?
            .unwrap_or_else(|| default.to_owned()))
    }

    /// `RUST_LOG`, checked: a filter `tracing` accepts, else `default`.
    pub fn log_filter(&self, default: &str) -> Result<String, SettingsError> {
        Ok(self
            .parse(
                "RUST_LOG",
                "a tracing filter such as info,order_service=debug",
                |raw| {
                    tracing_subscriber::EnvFilter::try_new(raw)
                        .is_ok()
                        .then(|| raw.to_owned())
                },
            )?
            .unwrap_or_else(|| default.to_owned()))
    }

    /// `LOG_FORMAT`: `text` or `json`.
    pub fn log_format(&self) -> Result<Option<ordo_telemetry::LogFormat>, SettingsError> {
        self.parse("LOG_FORMAT", "text or json", |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "text" => Some(ordo_telemetry::LogFormat::Text),
                "json" => Some(ordo_telemetry::LogFormat::Json),
                _ => None,
            }
        })
    }
}

/// A lookup over fixed `(name, value)` pairs, for tests of settings.
pub fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`; anything else as is.
pub fn redact_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => value.to_owned(),
        },
        None => value.to_owned(),
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A non-zero duration such as `500ms`, `2s` or `1m`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    humantime::parse_duration(raw)
        .ok()
        .filter(|duration| !duration.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("plain"), "plain");
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
    }
}
