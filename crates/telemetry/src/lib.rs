//! What Ordo's services tell about themselves: logs, traces and metrics.
//!
//! - [`init`] installs the log subscriber (text or JSON on stderr, by
//!   `LOG_FORMAT`, filtered by `RUST_LOG`) and, when an OTLP endpoint is set,
//!   an OpenTelemetry layer exporting spans over gRPC; [`Telemetry::shutdown`]
//!   flushes them.
//! - [`propagation`] carries W3C `traceparent` / `tracestate` across process
//!   boundaries: gRPC metadata, NATS headers, and outbox rows (whose headers
//!   become NATS headers), so one order is one trace.
//! - [`grpc`]: the server layer that continues a caller's trace in a span per
//!   request (with the correlation id) and counts requests by method and
//!   code ([`metrics::GrpcMetrics`]); and client-side injection.
//! - [`metrics`]: Prometheus exposition — families a service reads at
//!   scrape time, encoded by the `prometheus-client` crate, a lock-free
//!   latency histogram, and the `/metrics` endpoint (axum).
//! - [`process`]: the standard `process_*` families from `/proc/self`, and
//!   `ordo_build_info`.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod metrics;
pub mod process;
pub mod propagation;
mod subscriber;

pub use subscriber::{LogFormat, OtlpHeaders, OtlpTls, Telemetry, TelemetryConfig, init};

/// The span field, log field and attribute that carries an order's correlation id.
pub const CORRELATION_ID: &str = "correlation_id";
/// The gRPC metadata key and NATS header of the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The longest correlation id accepted.
pub const CORRELATION_ID_MAX_LEN: usize = 128;

/// The rule for a correlation id, wherever one enters (a request's metadata,
/// a message's header or payload): 1-128 printable ASCII characters, no
/// spaces — so it can travel in any header, label or log line as it is.
pub fn correlation_id_rule(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > CORRELATION_ID_MAX_LEN {
        return Err(format!("must be 1-{CORRELATION_ID_MAX_LEN} characters"));
    }
    if !raw.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".to_owned());
    }
    Ok(())
}

/// Text from outside (a message field, a dependency's error) made safe to
/// store, log and echo: control characters (NUL, line breaks) become
/// spaces, and it is cut to `max_chars` characters (an ellipsis marks the
/// cut).
pub fn safe_text(raw: &str, max_chars: usize) -> String {
    let mut text: String = raw
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if raw.chars().nth(max_chars).is_some() {
        text.push('…');
    }
    text
}

/// `raw` if it keeps [`correlation_id_rule`], else `None`.
pub fn valid_correlation_id(raw: &str) -> Option<&str> {
    correlation_id_rule(raw).ok().map(|()| raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_one_bounded_line() {
        assert_eq!(safe_text("a\0b\r\nc", 10), "a b  c");
        assert_eq!(safe_text("abcdef", 3), "abc…");
        assert_eq!(safe_text("", 3), "");
        assert!(correlation_id_rule("ok-1").is_ok());
        for bad in ["", "a b", "a\nb", "é"] {
            assert!(correlation_id_rule(bad).is_err(), "{bad:?}");
        }
        assert!(correlation_id_rule(&"x".repeat(129)).is_err());
    }
}
