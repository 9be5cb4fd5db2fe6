//! W3C trace context across process boundaries.
//!
//! A span's context is written as `traceparent` (and `tracestate`) into
//! whatever carries the work on: gRPC metadata, NATS headers, the headers
//! of an outbox row. The receiving side reads it back and makes it the
//! parent of its own span, so the trace continues.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, global};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The headers that carry trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The current span's context as `(name, value)` header pairs (none when
/// no trace is recorded).
pub fn current_headers() -> Vec<(String, String)> {
    headers_of(&tracing::Span::current().context())
}

/// `cx` as `(name, value)` header pairs.
pub fn headers_of(cx: &Context) -> Vec<(String, String)> {
    let mut pairs = Pairs(Vec::new());
    global::get_text_map_propagator(|propagator| propagator.inject_context(cx, &mut pairs));
    pairs.0.retain(|(_, value)| !value.is_empty());
    pairs.0
}

/// The context carried by `(name, value)` pairs (an empty one if none).
pub fn context_from<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Context {
    let pairs = Pairs(
        pairs
            .into_iter()
            .filter(|(name, _)| {
                TRACE_HEADERS
                    .iter()
                    .any(|header| name.eq_ignore_ascii_case(header))
            })
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect(),
    );
    global::get_text_map_propagator(|propagator| propagator.extract(&pairs))
}

/// Makes `cx` the parent of `span` (a no-op when `cx` carries no trace).
pub fn set_parent(span: &tracing::Span, cx: Context) {
    use opentelemetry::trace::TraceContextExt as _;
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The context carried by NATS headers.
pub fn context_from_nats(headers: Option<&async_nats::HeaderMap>) -> Context {
    let Some(headers) = headers else {
        return Context::new();
    };
    context_from(
        TRACE_HEADERS
            .iter()
            .filter_map(|name| headers.get(*name).map(|value| (*name, value.as_str()))),
    )
}

/// Writes the current span's context into NATS headers, replacing any.
pub fn inject_nats(headers: &mut async_nats::HeaderMap, cx: &Context) {
    for (name, value) in headers_of(cx) {
        headers.insert(name.as_str(), value.as_str());
    }
}

/// Writes the current span's context into an outgoing gRPC request.
pub fn inject_grpc<T>(request: &mut tonic::Request<T>) {
    for (name, value) in current_headers() {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            request.metadata_mut().insert(name, value);
        }
    }
}

/// The context carried by HTTP (gRPC) request headers.
pub fn context_from_http(headers: &http::HeaderMap) -> Context {
    context_from(
        TRACE_HEADERS
            .iter()
            .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?))),
    )
}

struct Pairs(Vec<(String, String)>);

impl Injector for Pairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(name, _)| name != key);
        self.0.push((key.to_owned(), value));
    }
}

impl Extractor for Pairs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;

    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from([("traceparent", traceparent), ("x-other", "1")]);
        let span = cx.span();
        let span_context = span.span_context();
        assert!(span_context.is_valid());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let headers = headers_of(&cx);
        assert_eq!(
            headers,
            [("traceparent".to_owned(), traceparent.to_owned())]
        );
        assert!(
            !context_from([("traceparent", "garbage")])
                .span()
                .span_context()
                .is_valid()
        );
    }
}
