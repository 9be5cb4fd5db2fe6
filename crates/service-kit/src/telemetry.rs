//! Telemetry settings: `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, and `METRICS_LISTEN_ADDR`.

use std::net::SocketAddr;

use ordo_telemetry::TelemetryConfig;

use crate::{Lookup, SettingsError};

/// Reads the telemetry settings; `service_name` and `log_filter` are the
/// binary's defaults.
pub fn telemetry_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    service_name: &str,
    log_filter: &str,
) -> Result<TelemetryConfig, SettingsError> {
    Ok(TelemetryConfig {
        log_format: env.log_format()?.unwrap_or_default(),
        log_filter: env.log_filter(log_filter)?,
        otlp_endpoint: env.parse(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "an http:// URL of an OTLP/gRPC collector, e.g. http://127.0.0.1:4317",
            |raw| {
                (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned())
            },
        )?,
        service_name: env
            .parse("OTEL_SERVICE_NAME", "a service name", |raw| {
                Some(raw.to_owned())
            })?
            .unwrap_or_else(|| service_name.to_owned()),
    })
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
