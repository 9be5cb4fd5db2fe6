//! Publishing one event to JetStream, as a tower [`Service`], so timeouts,
//! backoff and circuit breakers wrap it from outside without touching the
//! actors.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
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
#[derive(Clone, Debug)]
pub struct JetStreamPublisher {
    jetstream: jetstream::Context,
}

impl JetStreamPublisher {
    pub fn new(jetstream: jetstream::Context) -> Self {
        Self { jetstream }
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
        let jetstream = self.jetstream.clone();
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            for (name, value) in &event.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            let message = jetstream::message::PublishMessage::build()
                .payload(event.payload)
                .headers(headers)
                .message_id(&event.event_id);
            let ack = jetstream
                .send_publish(event.subject, message)
                .await?
                .await
                .map_err(|err| -> BoxError {
                    match err.kind() {
                        PublishErrorKind::TimedOut => "publish ack timed out".into(),
                        _ => Box::new(err),
                    }
                })?;
            Ok(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }
}
