//! gRPC servers: one span per request continuing the caller's trace, and
//! request counts and latencies by service, method and code.
//!
//! The layer sits at the HTTP level (outermost on every server). It reads
//! `traceparent` / `tracestate` and `x-correlation-id` from the request
//! headers, runs the handler inside a `grpc.server` span (so whatever the
//! handler records — an outbox row, a log line — belongs to the caller's
//! trace), and reads the outcome from the response: an error is a
//! trailers-only response whose headers carry `grpc-status`; a response
//! without it is counted OK (a streaming call that fails after its first
//! message is counted by its headers too).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::metrics::{Exposition, LatencyHistogram};
use crate::propagation;

/// Requests handled, by method and code; and the server's TLS.
#[derive(Debug, Default)]
pub struct GrpcMetrics {
    handled: Mutex<HashMap<(String, &'static str), Arc<LatencyHistogram>>>,
    /// Counts of the server's TLS, when it serves TLS.
    pub tls: TlsCounters,
}

/// What a TLS server counts.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Whether the server speaks TLS (the families are exposed only then).
    pub enabled: std::sync::atomic::AtomicBool,
    /// Handshakes that failed or timed out (plaintext clients among them).
    pub handshake_failures: AtomicU64,
    /// Changed certificate files taken into use.
    pub reloads: AtomicU64,
    /// Changed certificate files that could not be used (the previous
    /// ones stayed).
    pub reload_failures: AtomicU64,
}

impl TlsCounters {
    /// `ordo_tls_handshake_failures_total`, `ordo_tls_reloads_total{result}`.
    fn expose(&self, out: &mut Exposition) {
        if !self.enabled.load(Relaxed) {
            return;
        }
        out.counter(
            "ordo_tls_handshake_failures_total",
            "TLS handshakes of the gRPC server that failed or timed out.",
            [(&[][..], self.handshake_failures.load(Relaxed) as f64)],
        );
        out.counter(
            "ordo_tls_reloads_total",
            "Changed certificate files read again, by result (failed: the previous ones stayed).",
            [
                (
                    &[("result", "loaded")][..],
                    self.reloads.load(Relaxed) as f64,
                ),
                (
                    &[("result", "failed")][..],
                    self.reload_failures.load(Relaxed) as f64,
                ),
            ],
        );
    }
}

impl GrpcMetrics {
    fn record(&self, method: &str, code: &'static str, took: std::time::Duration) {
        let histogram = Arc::clone(
            self.handled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((method.to_owned(), code))
                .or_default(),
        );
        histogram.record(took);
    }

    /// `ordo_grpc_server_handled_total` and `ordo_grpc_server_handling_seconds`,
    /// labelled as the gRPC ecosystem's server metrics are: `grpc_service`
    /// (`ordo.order.v1.OrderService`), `grpc_method` (`PlaceOrder`),
    /// `grpc_code` (`OK`, `UNAVAILABLE`, …).
    pub fn expose(&self, out: &mut Exposition) {
        let handled: Vec<((String, &'static str), Arc<LatencyHistogram>)> = self
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, histogram)| (key.clone(), Arc::clone(histogram)))
            .collect();
        let labels: Vec<[(&str, &str); 3]> = handled
            .iter()
            .map(|((path, code), _)| {
                let (service, method) = service_and_method(path);
                [
                    ("grpc_service", service),
                    ("grpc_method", method),
                    ("grpc_code", *code),
                ]
            })
            .collect();
        out.counter(
            "ordo_grpc_server_handled_total",
            "gRPC requests answered, by service, method and status code.",
            labels
                .iter()
                .zip(&handled)
                .map(|(labels, (_, histogram))| (&labels[..], histogram.count() as f64)),
        );
        out.histogram(
            "ordo_grpc_server_handling_seconds",
            "Time to answer a gRPC request (to its response headers), by service, method and status code.",
            labels
                .iter()
                .zip(&handled)
                .map(|(labels, (_, histogram))| (&labels[..], histogram.as_ref())),
        );
        self.tls.expose(out);
    }
}

/// Traces and counts every request of a server.
#[derive(Debug, Clone, Default)]
pub struct ServerTraceLayer {
    metrics: Arc<GrpcMetrics>,
}

impl ServerTraceLayer {
    pub fn new(metrics: Arc<GrpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`ServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The path is the caller's to choose: bounded in spans, and only a
        // method the server knows (not UNIMPLEMENTED) becomes a metric label.
        let method = crate::safe_text(request.uri().path().trim_start_matches('/'), 128);
        let housekeeping =
            method.starts_with("grpc.health.") || method.starts_with("grpc.reflection.");
        let span = if housekeeping {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "grpc.server",
                otel.name = %method,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                correlation_id = tracing::field::Empty,
            )
        };
        if let Some(correlation_id) = request
            .headers()
            .get(crate::CORRELATION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(crate::valid_correlation_id)
        {
            span.record(crate::CORRELATION_ID, correlation_id);
        }
        propagation::set_parent(&span, propagation::context_from_http(request.headers()));
        let started = Instant::now();
        let metrics = Arc::clone(&self.metrics);
        let call = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let response = call.await;
            let code = match &response {
                Ok(response) => code_name(
                    response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse().ok())
                        .unwrap_or(0),
                ),
                Err(_) => "TRANSPORT_ERROR",
            };
            span.record("rpc.grpc.status_code", code);
            let label = if code == "UNIMPLEMENTED" {
                "unknown"
            } else {
                method.as_str()
            };
            metrics.record(label, code, started.elapsed());
            response
        })
    }
}

/// `pkg.Service/Method` as (`pkg.Service`, `Method`); a path without a
/// slash (`unknown`: a method the server does not serve) is both.
fn service_and_method(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, path))
}

/// A gRPC status code's canonical name.
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|index| NAMES.get(index))
        .copied()
        .unwrap_or("UNKNOWN")
}
