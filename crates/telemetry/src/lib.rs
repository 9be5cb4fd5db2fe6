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
//! - [`metrics`]: Prometheus text exposition — a writer, a histogram, and
//!   the `/metrics` HTTP endpoint.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod metrics;
pub mod propagation;
mod subscriber;

pub use subscriber::{LogFormat, Telemetry, TelemetryConfig, init};

/// The span field, log field and attribute that carries an order's correlation id.
pub const CORRELATION_ID: &str = "correlation_id";
/// The gRPC metadata key and NATS header of the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
