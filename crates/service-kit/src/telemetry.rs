//! Telemetry settings: `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, the exporter's `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
//! and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (as the OpenTelemetry specification
//! names them), and `METRICS_LISTEN_ADDR`.

use std::net::SocketAddr;

use ordo_telemetry::{OtlpHeaders, OtlpTls, TelemetryConfig};

use crate::{Lookup, SettingsError};

/// Reads the telemetry settings; `service_name` and `log_filter` are the
/// binary's defaults.
pub fn telemetry_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    service_name: &str,
    log_filter: &str,
) -> Result<TelemetryConfig, SettingsError> {
    let otlp_endpoint = env.parse(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "an http:// or https:// URL of an OTLP/gRPC collector, e.g. http://127.0.0.1:4317",
        |raw| (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned()),
    )?;
    let otlp_tls = OtlpTls {
        ca_file: env.file("OTEL_EXPORTER_OTLP_CERTIFICATE")?,
        client: match (
            env.file("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?,
            env.file("OTEL_EXPORTER_OTLP_CLIENT_KEY")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(SettingsError::new(
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    "",
                    "both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY, or neither",
                ));
            }
        },
    };
    if otlp_tls != OtlpTls::default()
        && !otlp_endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("https://"))
    {
        return Err(SettingsError::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            otlp_endpoint.as_deref().unwrap_or(""),
            "an https:// URL: OTEL_EXPORTER_OTLP_CERTIFICATE or a client certificate is set",
        ));
    }
    Ok(TelemetryConfig {
        log_format: env.log_format()?.unwrap_or_default(),
        log_filter: env.log_filter(log_filter)?,
        otlp_endpoint,
        otlp_headers: env
            .parse(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "name=value pairs, comma-separated (values percent-encoded)",
                parse_headers,
            )?
            .unwrap_or_default(),
        otlp_tls,
        service_name: env
            .parse("OTEL_SERVICE_NAME", "a service name", |raw| {
                Some(raw.to_owned())
            })?
            .unwrap_or_else(|| service_name.to_owned()),
    })
}

/// `name=value,name=value` (W3C baggage style: values percent-encoded),
/// each name a valid lowercase header name; `None` if any pair is not.
fn parse_headers(raw: &str) -> Option<OtlpHeaders> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            let value = crate::postgres::percent_decoded(value.trim());
            let valid_value = value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            (valid_name && valid_value).then_some((name, value))
        })
        .collect::<Option<Vec<_>>>()
        .map(OtlpHeaders)
}

/// `METRICS_LISTEN_ADDR`: where `/metrics` is served; `off` serves none.
pub fn metrics_addr_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    default: Option<SocketAddr>,
) -> Result<Option<SocketAddr>, SettingsError> {
    Ok(env
        .parse(
            "METRICS_LISTEN_ADDR",
            "host:port, e.g. 0.0.0.0:9464, or off",
            |raw| {
                if raw.eq_ignore_ascii_case("off") {
                    Some(None)
                } else {
                    raw.parse().ok().map(Some)
                }
            },
        )?
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::lookup_from;

    #[test]
    fn otlp_headers_and_tls_are_read() {
        let env = lookup_from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s3cr%3Dt, X-Tenant=ordo",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/hostname"),
        ]);
        let config = telemetry_from(&Lookup(&env), "svc", "info").unwrap();
        assert_eq!(
            config.otlp_headers.0,
            vec![
                ("api-key".to_owned(), "s3cr=t".to_owned()),
                ("x-tenant".to_owned(), "ordo".to_owned())
            ]
        );
        assert!(
            !format!("{config:?}").contains("s3cr"),
            "header values are not shown"
        );
        assert_eq!(
            config.otlp_tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/hostname"))
        );

        let plaintext = lookup_from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/hostname"),
        ]);
        let err = telemetry_from(&Lookup(&plaintext), "svc", "info").unwrap_err();
        assert_eq!(err.name, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let bad = lookup_from(&[("OTEL_EXPORTER_OTLP_HEADERS", "api key=secret-value")]);
        let err = telemetry_from(&Lookup(&bad), "svc", "info").unwrap_err();
        assert!(!err.to_string().contains("secret-value"), "{err}");
    }
}
