//! The durable pull consumers that feed status messages to the store.
//!
//! One durable consumer per subject (`<prefix>orders.confirmed`, `.rejected`,
//! `.refunded`; one filter subject each, which every JetStream server
//! version supports), explicit acks. A message is acked once its effect —
//! or its being ignored, or a duplicate — is committed; a database failure
//! NAKs it with a delay, so it comes back. Set-up retries with backoff until
//! the stream exists, so the service may start before NATS or the relay.
//! Up to `STATUS_CONSUMER_CONCURRENCY` messages are handled at once, so
//! their settlements share transactions (`STATUS_SETTLE_BATCH`); the inbox
//! keeps each message's effect single, whatever runs beside it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::{StreamExt as _, TryStreamExt as _};
use ordo_outbox::StreamSettings;
use ordo_service_kit::metrics::ConsumerCounters;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::decode::decode;
use crate::store::{OrderStore, StatusOutcome};

/// This consumer's name in the inbox.
pub const CONSUMER_NAME: &str = "order-service.status";
/// The status subjects consumed, one durable consumer each (`order-service-<kind>`).
pub const KINDS: [&str; 3] = ["confirmed", "rejected", "refunded"];
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Consumes status messages until told to stop.
#[derive(Debug, Clone)]
pub struct StatusConsumer {
    pub store: OrderStore,
    pub nats_url: String,
    pub nats_security: ordo_service_kit::nats::NatsSecurity,
    pub stream: StreamSettings,
    /// Outcomes, for `/metrics`.
    pub counters: Arc<ConsumerCounters>,
    /// Messages handled at once (their settlements batch together).
    pub concurrency: usize,
}

impl StatusConsumer {
    /// Runs until `stop` turns true; reconnects and re-subscribes on errors.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(100);
        while !*stop.borrow() {
            tokio::select! {
                result = self.consume() => match result {
                    Ok(()) => delay = Duration::from_millis(100),
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in = ?delay, "status consumer not running");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = stop.changed() => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                },
                _ = stop.changed() => {}
            }
        }
    }

    async fn consume(&self) -> Result<(), async_nats::Error> {
        let (client, _) = ordo_service_kit::nats::connect_service(
            &self.nats_url,
            &self.nats_security,
            "order-service status consumer",
        )
        .await?;
        let jetstream = jetstream::new(client);
        let stream = jetstream.get_stream(&self.stream.name).await?;
        let mut feeds = Vec::new();
        for kind in KINDS {
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &format!("order-service-{kind}"),
                    consumer::pull::Config {
                        durable_name: Some(format!("order-service-{kind}")),
                        filter_subject: self.stream.subject_for(&format!("orders.{kind}")),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        ..Default::default()
                    },
                )
                .await?;
            feeds.push(consumer.messages().await?.boxed());
        }
        tracing::info!(stream = self.stream.name, "status consumer running");
        futures::stream::select_all(feeds)
            .map_err(async_nats::Error::from)
            .try_for_each_concurrent(self.concurrency.max(1), |message| async move {
                self.handle(message).await;
                Ok(())
            })
            .await
    }

    async fn handle(&self, message: jetstream::Message) {
        let span = tracing::info_span!(
            "order.status_apply",
            otel.name = %format!("apply {}", message.subject),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.destination.name = %message.subject,
            correlation_id = tracing::field::Empty,
        );
        if let Some(correlation_id) = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(ordo_telemetry::CORRELATION_HEADER))
            .and_then(|value| ordo_telemetry::valid_correlation_id(value.as_str()))
        {
            span.record(ordo_telemetry::CORRELATION_ID, correlation_id);
        }
        ordo_telemetry::propagation::set_parent(
            &span,
            ordo_telemetry::propagation::context_from_nats(message.headers.as_ref()),
        );
        self.handle_in_span(message).instrument(span).await;
    }

    async fn handle_in_span(&self, message: jetstream::Message) {
        let subject = message.subject.to_string();
        let delivery = message.info().map_or_else(
            |_| ordo_inbox::Delivery::default(),
            |info| ordo_inbox::Delivery {
                order_id: None,
                stream_sequence: info.stream_sequence,
                published_at: ordo_inbox::published_at(info.published.unix_timestamp_nanos()),
            },
        );
        let message_id = ordo_inbox::message_key(
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                .map(async_nats::HeaderValue::as_str),
            &self.stream.name,
            delivery.stream_sequence,
        );
        let event = decode(&subject, &message.payload);
        match self
            .store
            .order_status_apply(CONSUMER_NAME, &message_id, &subject, delivery, event)
            .await
        {
            Ok(outcome) => {
                let counter = match &outcome {
                    StatusOutcome::Applied(_) => &self.counters.applied,
                    StatusOutcome::Ignored(_) => &self.counters.ignored,
                    StatusOutcome::Duplicate => &self.counters.duplicates,
                };
                ConsumerCounters::count(counter);
                match &outcome {
                    StatusOutcome::Applied(what) => {
                        tracing::info!(message_id, subject, what, "status applied")
                    }
                    StatusOutcome::Ignored(why) => {
                        tracing::warn!(message_id, subject, why, "status message ignored")
                    }
                    StatusOutcome::Duplicate => {
                        tracing::info!(message_id, subject, "duplicate status message skipped")
                    }
                }
                if let Err(err) = message.ack().await {
                    tracing::warn!(message_id, error = %err, "ack failed; the message will be redelivered and deduplicated");
                }
            }
            Err(err) => {
                ConsumerCounters::count(&self.counters.retried);
                tracing::warn!(message_id, error = %err, "status message failed; redelivering later");
                let _ = message
                    .ack_with(AckKind::Nak(Some(RETRY_AFTER_FAILURE)))
                    .await;
            }
        }
    }
}
