//! An event on its way into the outbox, with the NATS headers it will carry.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Header names the outbox writes and the relay publishes.
pub mod headers {
    /// The correlation id of the request that caused the event.
    pub const CORRELATION_ID: &str = "x-correlation-id";
    /// CloudEvents binary mode: spec version.
    pub const CE_SPECVERSION: &str = "ce-specversion";
    /// CloudEvents binary mode: event id (equal to `Nats-Msg-Id`).
    pub const CE_ID: &str = "ce-id";
    /// CloudEvents binary mode: event type (the payload's protobuf full name).
    pub const CE_TYPE: &str = "ce-type";
    /// CloudEvents binary mode: the emitting service.
    pub const CE_SOURCE: &str = "ce-source";
    /// CloudEvents binary mode: the aggregate the event is about.
    pub const CE_SUBJECT: &str = "ce-subject";
    /// CloudEvents binary mode: when it happened (RFC 3339).
    pub const CE_TIME: &str = "ce-time";
    /// Payload media type.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// One event to write: its identity, where it goes, and its encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique per event; becomes `Nats-Msg-Id`, so a re-publish is dropped.
    pub event_id: Uuid,
    /// Kind of aggregate, e.g. `order`.
    pub aggregate_type: &'static str,
    /// The aggregate's id; decides the partition, so per-aggregate order holds.
    pub aggregate_id: String,
    /// NATS subject, e.g. `orders.placed`.
    pub subject: &'static str,
    /// Protobuf full name of the payload, e.g. `ordo.events.v1.OrderPlaced`.
    pub event_type: &'static str,
    /// The protobuf-encoded payload.
    pub payload: Vec<u8>,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// Headers to publish with: CloudEvents attributes, the correlation id,
    /// and the trace context (`traceparent`) of the span that wrote it.
    pub headers: BTreeMap<String, String>,
}

impl OutboxEvent {
    /// An event with a fresh id, its CloudEvents binary-mode headers and
    /// correlation id set, and an empty payload: encode the payload (which
    /// usually carries [`OutboxEvent::event_id`]) and set it with
    /// [`OutboxEvent::with_payload`].
    pub fn new(
        source: &str,
        aggregate_type: &'static str,
        aggregate_id: String,
        subject: &'static str,
        event_type: &'static str,
        occurred_at: DateTime<Utc>,
        correlation_id: &str,
    ) -> Self {
        let event_id = Uuid::now_v7();
        let headers = BTreeMap::from([
            (headers::CE_SPECVERSION.to_owned(), "1.0".to_owned()),
            (headers::CE_ID.to_owned(), event_id.to_string()),
            (headers::CE_TYPE.to_owned(), event_type.to_owned()),
            (headers::CE_SOURCE.to_owned(), source.to_owned()),
            (headers::CE_SUBJECT.to_owned(), aggregate_id.clone()),
            (
                headers::CE_TIME.to_owned(),
                occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            (
                headers::CONTENT_TYPE.to_owned(),
                "application/protobuf".to_owned(),
            ),
            (
                headers::CORRELATION_ID.to_owned(),
                correlation_id.to_owned(),
            ),
        ]);
        // The writing span's trace context: the relay's publish continues it.
        let mut headers = headers;
        headers.extend(ordo_telemetry::propagation::current_headers());
        Self {
            event_id,
            aggregate_type,
            aggregate_id,
            subject,
            event_type,
            payload: Vec::new(),
            occurred_at,
            headers,
        }
    }

    /// The same event carrying `payload`.
    pub fn with_payload(self, payload: Vec<u8>) -> Self {
        Self { payload, ..self }
    }

    /// The headers as the JSON object stored in the `headers` column.
    pub fn headers_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.headers
                .iter()
                .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
                .collect(),
        )
    }
}
