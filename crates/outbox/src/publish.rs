//! Publishing one event to JetStream, as a tower [`Service`], so timeouts,
//! backoff and circuit breakers wrap it from outside without touching the
//! actors.
//!
//! An event that can never be published — a header NATS cannot carry (a
//! line break in a value, a name with control characters or a colon), a
//! message over the server's max payload — fails with
//! [`ordo_resilience::classify::Permanent`] before anything is sent; the
//! relay parks it. Nothing an event carries can make publishing panic.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use ordo_resilience::classify::Permanent;
use tower::{BoxError, Service};

/// An outbox row on its way to JetStream.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// Full subject, prefix included.
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a re-publish inside its window.
    pub event_id: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
    /// The aggregate, for layers that care (ordering, fault injection).
    pub aggregate_id: String,
}

/// JetStream's answer to one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Stream sequence of the stored message (of the first copy for a duplicate).
    pub sequence: u64,
    /// The event id was seen inside the duplicate window: nothing new stored.
    pub duplicate: bool,
}

/// The publish service the relay calls: cloned per aggregate chain.
pub type PublishService = tower::util::BoxCloneSyncService<OutboundEvent, Published, BoxError>;

/// Publishes with `Nats-Msg-Id` and waits for the stream's ack.
///
/// Cloned for every aggregate chain and moved into every publish's future,
/// so it is one shared pointer: a JetStream context clones its client
/// (several shared pointers and a channel sender), which the relay paid
/// three times an event.
#[derive(Clone, Debug)]
pub struct JetStreamPublisher {
    shared: Arc<Connection>,
}

#[derive(Debug)]
struct Connection {
    jetstream: jetstream::Context,
    /// The context's client, asked for the server's max payload (an atomic
    /// read, where the server's whole `INFO` would be copied per event).
    client: async_nats::Client,
}

impl JetStreamPublisher {
    pub fn new(jetstream: jetstream::Context) -> Self {
        let client = jetstream.client();
        Self {
            shared: Arc::new(Connection { jetstream, client }),
        }
    }
}

impl Service<OutboundEvent> for JetStreamPublisher {
    type Response = Published;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Published, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: OutboundEvent) -> Self::Future {
        // Refused before anything is sent: nothing to wait for.
        let refused = |why: String| -> Self::Future {
            Box::pin(std::future::ready(
                Err(Box::new(Permanent(why)) as BoxError),
            ))
        };
        let headers = match headers_of(&event) {
            Ok(headers) => headers,
            Err(why) => return refused(why),
        };
        let max_payload = self.shared.client.max_payload();
        let size = message_size(&event);
        if max_payload > 0 && size > max_payload {
            return refused(format!(
                "a message of {size} bytes is over the server's max payload of {max_payload}"
            ));
        }
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let message = jetstream::message::PublishMessage::build()
                .payload(event.payload)
                .headers(headers)
                .message_id(&event.event_id);
            let ack = shared
                .jetstream
                .send_publish(event.subject, message)
                .await
                .map_err(publish_error)?
                .await
                .map_err(publish_error)?;
            Ok(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }
}

/// A failed publish as the relay sees it: a message over the max payload
/// (refused by the client or by the server) can never go; anything else
/// may on the next round.
fn publish_error(err: jetstream::context::PublishError) -> BoxError {
    match err.kind() {
        PublishErrorKind::TimedOut => "publish ack timed out".into(),
        PublishErrorKind::MaxPayloadExceeded => Box::new(Permanent(err.to_string())),
        _ if err.to_string().contains("maximum payload exceeded") => {
            Box::new(Permanent(err.to_string()))
        }
        _ => Box::new(err),
    }
}

/// The event's headers as NATS headers, or why they cannot be.
pub fn headers_of(event: &OutboundEvent) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &event.headers {
        let header_name = name
            .parse::<HeaderName>()
            .ok()
            .filter(|_| is_header_name(name))
            .ok_or_else(|| format!("header name {:?} is not a NATS header name", shown(name)))?;
        let header_value = value.parse::<HeaderValue>().map_err(|_| {
            format!(
                "header {name} has a line break in its value {:?}",
                shown(value)
            )
        })?;
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

/// What NATS accepts as a header name: printable ASCII, no colon.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b':')
}

/// At most 64 characters of `text`, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Bytes the message takes on the wire, close enough to compare with the
/// server's max payload (which counts headers and payload).
fn message_size(event: &OutboundEvent) -> usize {
    let headers: usize = event
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    // NATS/1.0 line, Nats-Msg-Id, and the blank line that ends the headers.
    headers + event.event_id.len() + 32 + event.payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(headers: &[(&str, &str)]) -> OutboundEvent {
        OutboundEvent {
            subject: "orders.placed".into(),
            event_id: "e-1".into(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            payload: Bytes::from_static(b"x"),
            aggregate_id: "a".into(),
        }
    }

    #[test]
    fn a_message_over_the_max_payload_is_permanent_whoever_refuses_it() {
        use jetstream::context::PublishError;
        let client_side = publish_error(PublishError::new(PublishErrorKind::MaxPayloadExceeded));
        assert!(client_side.is::<Permanent>(), "{client_side}");
        let timed_out = publish_error(PublishError::new(PublishErrorKind::TimedOut));
        assert!(!timed_out.is::<Permanent>(), "{timed_out}");
        let broken = publish_error(PublishError::new(PublishErrorKind::BrokenPipe));
        assert!(!broken.is::<Permanent>(), "{broken}");
    }

    #[test]
    fn headers_nats_cannot_carry_are_refused_not_panicked_on() {
        assert!(headers_of(&event(&[("x-correlation-id", "abc")])).is_ok());
        for bad in [
            event(&[("x-correlation-id", "a\r\nNats-Msg-Id: forged")]),
            event(&[("x-correlation-id", "line\nbreak")]),
            event(&[("bad:name", "v")]),
            event(&[("bad name", "v")]),
            event(&[("", "v")]),
            event(&[("naïve", "v")]),
        ] {
            let why = headers_of(&bad).unwrap_err();
            assert!(why.contains("header"), "{why}");
        }
    }
}
