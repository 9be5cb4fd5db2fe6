//! Reading settings by name: an unset or blank one is `None`, a bad one is
//! a [`SettingsError`] that names it, shows it (secrets hidden) and says
//! what fits. Services read through a lookup function, so tests never touch
//! the process environment.
//!
//! Every setting `NAME` may instead be given as `NAME_FILE`, the path of a
//! file holding the value (surrounding whitespace ignored), as container
//! platforms mount secrets; setting both is an error.

use std::time::Duration;

/// A setting that could not be used: names it, shows it, says what fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct SettingsError {
    pub name: String,
    pub value: String,
    pub expected: String,
}

impl SettingsError {
    /// An error about `name`'s `value`, shown as [`shown`] shows it.
    pub fn new(name: &str, value: &str, expected: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: shown(name, value),
            expected: expected.into(),
        }
    }
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
        let Some((source, value)) = self.raw(name)? else {
            return Ok(None);
        };
        parser(&value).map(Some).ok_or_else(|| SettingsError {
            value: shown(name, &value),
            name: source,
            expected: expected.to_owned(),
        })
    }

    /// The trimmed value of `name`, or of the file `name_FILE` names, with
    /// the setting it came from; `None` when neither is set (or blank).
    pub fn raw(&self, name: &str) -> Result<Option<(String, String)>, SettingsError> {
        let set = |name: &str| (self.0)(name).filter(|value| !value.trim().is_empty());
        let file_setting = format!("{name}_FILE");
        match (set(name), set(&file_setting)) {
            (None, None) => Ok(None),
            (Some(value), None) => Ok(Some((name.to_owned(), value.trim().to_owned()))),
            (None, Some(path)) => {
                let path = path.trim();
                let value = std::fs::read_to_string(path).map_err(|err| {
                    SettingsError::new(
                        &file_setting,
                        path,
                        format!("a readable file holding {name} ({err})"),
                    )
                })?;
                let value = value.trim();
                if value.is_empty() {
                    return Err(SettingsError::new(
                        &file_setting,
                        path,
                        format!("a file holding {name}, not an empty one"),
                    ));
                }
                Ok(Some((file_setting, value.to_owned())))
            }
            (Some(_), Some(path)) => Err(SettingsError::new(
                &file_setting,
                path.trim(),
                format!("{name} or {file_setting}, not both"),
            )),
        }
    }

    /// A path to a file that exists and can be read (a certificate, a key).
    pub fn file(&self, name: &'static str) -> Result<Option<std::path::PathBuf>, SettingsError> {
        let Some((source, path)) = self.raw(name)? else {
            return Ok(None);
        };
        match std::fs::File::open(&path) {
            Ok(_) => Ok(Some(std::path::PathBuf::from(path))),
            Err(err) => Err(SettingsError::new(
                &source,
                &path,
                format!("a readable file ({err})"),
            )),
        }
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

    /// A `postgres://` URL whose TLS parameters (`sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`) are usable; `default` when unset.
    pub fn postgres_url(&self, name: &'static str, default: &str) -> Result<String, SettingsError> {
        let Some((source, url)) = self.raw(name)? else {
            return Ok(default.to_owned());
        };
        crate::postgres::check_url(&url)
            .map(|()| url.clone())
            .map_err(|expected| SettingsError::new(&source, &url, expected))
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

/// Whether a setting holds a secret: its value is never shown, in an
/// error or anywhere else. Tokens, passwords and header lists (which carry
/// API keys) are secrets whole; a URL only in its password.
///
/// A `NAME_FILE` setting holds a path, which may be shown; the file's
/// contents are judged by `NAME`.
pub fn is_secret(name: &str) -> bool {
    ["_TOKEN", "_TOKENS", "_PASSWORD", "_HEADERS"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// How a setting's value may be shown: a secret as its length only, a URL
/// without its password, anything else as it is (cut to 200 characters).
pub fn shown(name: &str, value: &str) -> String {
    if is_secret(name) {
        return format!("<secret, {} characters>", value.chars().count());
    }
    ordo_telemetry::safe_text(&redact_password(value), 200)
}

/// `scheme://user:secret@host?password=secret` → `scheme://user:***@host?password=***`;
/// anything else as is.
pub fn redact_password(value: &str) -> String {
    let value = redact_query_password(value);
    let value = value.as_str();
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

/// `…?password=secret&…` → `…?password=***&…` (libpq takes one there too).
fn redact_query_password(value: &str) -> String {
    let Some((base, query)) = value.split_once('?') else {
        return value.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
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
        assert_eq!(
            redact_password("postgres://u:pw@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn a_secret_is_shown_by_its_length_only() {
        for name in [
            "PROCESSOR_ADMIN_TOKEN",
            "ORDER_SERVICE_ADMIN_TOKENS",
            "NATS_PASSWORD",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ] {
            assert!(is_secret(name), "{name}");
            assert_eq!(shown(name, "hunter2"), "<secret, 7 characters>");
        }
        assert!(!is_secret("NATS_URL"));
        assert!(!is_secret("NATS_PASSWORD_FILE"), "a path may be shown");
        assert_eq!(shown("NATS_URL", "nats://a:b@h"), "nats://a:***@h");
        let env = lookup_from(&[("PROCESSOR_ADMIN_TOKEN", "short-secret")]);
        let err = Lookup(&env)
            .parse("PROCESSOR_ADMIN_TOKEN", "16 characters", |_| None::<()>)
            .unwrap_err();
        assert!(!err.to_string().contains("short-secret"), "{err}");
        let dir = std::env::temp_dir().join(format!("ordo-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "short-secret\n").unwrap();
        let path = file.display().to_string();
        let env = lookup_from(&[("PROCESSOR_ADMIN_TOKEN_FILE", &path)]);
        let err = Lookup(&env)
            .parse("PROCESSOR_ADMIN_TOKEN", "16 characters", |_| None::<()>)
            .unwrap_err();
        assert_eq!(err.name, "PROCESSOR_ADMIN_TOKEN_FILE");
        assert!(!err.to_string().contains("short-secret"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_setting_may_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("ordo-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("value");
        std::fs::write(&file, "  42\n").unwrap();
        let path = file.display().to_string();
        let number = |pairs: &[(&str, &str)]| {
            let env = lookup_from(pairs);
            Lookup(&env).number("N", 1..=100, 7)
        };
        assert_eq!(number(&[]), Ok(7));
        assert_eq!(number(&[("N_FILE", &path)]), Ok(42));
        let both = number(&[("N", "3"), ("N_FILE", &path)]).unwrap_err();
        assert_eq!(both.name, "N_FILE");
        assert!(both.expected.contains("not both"), "{both}");
        let missing = number(&[("N_FILE", "/nonexistent/ordo")]).unwrap_err();
        assert_eq!(missing.name, "N_FILE");
        std::fs::write(&file, "500").unwrap();
        let bad = number(&[("N_FILE", &path)]).unwrap_err();
        assert_eq!((bad.name.as_str(), bad.value.as_str()), ("N_FILE", "500"));
        std::fs::write(&file, "\n").unwrap();
        assert!(
            number(&[("N_FILE", &path)]).is_err(),
            "an empty file is refused"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
    }
}
