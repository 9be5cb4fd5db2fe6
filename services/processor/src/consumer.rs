//! The durable pull consumers that feed orders to the [`Handler`], and what
//! becomes of each message: ack, NAK with a delay, or dead letter.
//!
//! One durable consumer per subject (`processor-placed`,
//! `processor-cancelled`; one filter subject each, which every JetStream
//! server supports), explicit acks, shared by every replica. Per message:
//!
//! - settled (applied, ignored, duplicate) → ack;
//! - deferred → NAK with the deferral's delay, no history entry;
//! - failed → one error-history entry; a transient failure below
//!   `max_attempts` → NAK with jittered exponential backoff; otherwise (or
//!   for a permanent failure) → dead letter with the whole history, then ack;
//! - undecodable → dead letter at once;
//! - the JetStream delivery cap reached (deferrals count there) → dead letter.
//!
//! On stop no new message is taken and those in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::{StreamExt as _, TryStreamExt as _};
use ordo_outbox::StreamSettings;
use ordo_service_kit::metrics::ConsumerCounters;
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::dead_letter::{DeadLetterDraft, DeadLetters};
use crate::handler::{Handled, Handler};
use crate::messages::decode;
use crate::processing::Failure;
use crate::settings::ConsumerSettings;
use crate::store::{MessageRef, Settled};

const KINDS: [&str; 2] = ["placed", "cancelled"];

/// Consumes placed and cancelled orders until told to stop.
#[derive(Debug, Clone)]
pub struct OrderConsumer {
    pub handler: Handler,
    pub jetstream: jetstream::Context,
    pub dead_letters: DeadLetters,
    pub stream: StreamSettings,
    pub settings: ConsumerSettings,
    pub faults: Arc<ConsumerFaults>,
    /// Outcomes, for `/metrics`.
    pub counters: Arc<ConsumerCounters>,
}

/// What a message is about, as far as it could be read.
#[derive(Debug, Clone, Copy)]
struct About<'a> {
    order_id: Option<Uuid>,
    correlation_id: &'a str,
}

/// Faults tests switch on to show what a crash would do.
#[derive(Debug, Default)]
pub struct ConsumerFaults {
    /// Acks to drop after the message's effect is committed, as if the
    /// processor died between commit and ack.
    pub lose_acks: AtomicU32,
}

impl ConsumerFaults {
    fn take_lost_ack(&self) -> bool {
        self.lose_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

impl OrderConsumer {
    /// Runs until `stop` turns true; re-subscribes (with backoff) on errors,
    /// so the processor may start before NATS or the stream.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(100);
        while !*stop.borrow() {
            match self.consume(stop.clone()).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "order consumer not running");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, mut stop: watch::Receiver<bool>) -> Result<(), async_nats::Error> {
        let stream = self.jetstream.get_stream(&self.stream.name).await?;
        self.dead_letters.ensure().await?;
        let mut feeds = Vec::new();
        for kind in KINDS {
            let name = format!("processor-{kind}");
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: self.stream.subject_for(&format!("orders.{kind}")),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: self.settings.ack_wait,
                        max_deliver: i64::from(self.settings.max_deliver),
                        max_ack_pending: i64::try_from(self.settings.concurrency * 4)
                            .unwrap_or(1024),
                        ..Default::default()
                    },
                )
                .await?;
            feeds.push(consumer.messages().await?.boxed());
        }
        tracing::info!(stream = self.stream.name, "order consumer running");
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        futures::stream::select_all(feeds)
            .take_until(stopped)
            .map_err(async_nats::Error::from)
            .try_for_each_concurrent(self.settings.concurrency, |message| async move {
                self.process(message).await;
                Ok(())
            })
            .await
    }

    /// Handles one message inside a span that continues the publisher's
    /// trace and carries the correlation id.
    async fn process(&self, message: jetstream::Message) {
        let correlation_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(ordo_telemetry::CORRELATION_HEADER))
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "processor.handle",
            otel.name = %format!("handle {}", message.subject),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.destination.name = %message.subject,
            correlation_id = %correlation_id,
        );
        ordo_telemetry::propagation::set_parent(
            &span,
            ordo_telemetry::propagation::context_from_nats(message.headers.as_ref()),
        );
        self.process_in_span(message, correlation_id)
            .instrument(span)
            .await;
    }

    async fn process_in_span(&self, message: jetstream::Message, correlation_id: String) {
        let subject = message.subject.to_string();
        let (delivered, stream_sequence) = message.info().map_or((1, 0), |info| {
            (
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
                info.stream_sequence,
            )
        });
        let message_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|id| id.as_str().to_owned())
            .unwrap_or_else(|| format!("{}:{stream_sequence}", self.stream.name));
        let at = MessageRef {
            message_id: &message_id,
            subject: &subject,
        };
        let incoming = match decode(&subject, &message.payload) {
            Ok(incoming) => incoming,
            Err(why) => {
                let failure = Failure::permanent("undecodable", why);
                let about = About {
                    order_id: None,
                    correlation_id: &correlation_id,
                };
                return self
                    .fail(&message, at, about, failure, stream_sequence)
                    .await;
            }
        };
        let order_id = incoming.order_id();
        let correlation_id = if incoming.correlation_id().is_empty() {
            correlation_id
        } else {
            incoming.correlation_id().to_owned()
        };
        let about = About {
            order_id: Some(order_id),
            correlation_id: &correlation_id,
        };
        if delivered >= self.settings.max_deliver {
            let failure = Failure::permanent(
                "delivery_limit",
                format!("delivered {delivered} times, the consumer's limit"),
            );
            return self
                .fail(&message, at, about, failure, stream_sequence)
                .await;
        }
        match self.handler.handle(at, &incoming, delivered).await {
            Ok(Handled::Settled(settled)) => {
                let counter = match &settled {
                    Settled::Applied(_) => &self.counters.applied,
                    Settled::Ignored(_) => &self.counters.ignored,
                    _ => &self.counters.duplicates,
                };
                ConsumerCounters::count(counter);
                match &settled {
                    Settled::Applied(what) => {
                        tracing::info!(message_id, subject, %order_id, correlation_id, what, "message applied")
                    }
                    Settled::Ignored(why) => {
                        tracing::info!(message_id, subject, %order_id, correlation_id, why, "message ignored")
                    }
                    _ => {
                        tracing::info!(message_id, subject, %order_id, correlation_id, "duplicate message skipped")
                    }
                }
                if self.faults.take_lost_ack() {
                    tracing::warn!(message_id, "fault: ack dropped after commit");
                    return;
                }
                ack(&message, AckKind::Ack, &message_id).await;
            }
            Ok(Handled::Deferred(delay)) => {
                ConsumerCounters::count(&self.counters.deferred);
                tracing::debug!(message_id, subject, %order_id, ?delay, "message deferred");
                ack(&message, AckKind::Nak(Some(delay)), &message_id).await;
            }
            Err(failure) => {
                self.fail(&message, at, about, failure, stream_sequence)
                    .await
            }
        }
    }

    /// Records a failed attempt, then retries later or dead-letters.
    async fn fail(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        about: About<'_>,
        failure: Failure,
        stream_sequence: u64,
    ) {
        let order_id = about.order_id;
        let attempt = match self
            .handler
            .store
            .error_append(
                at,
                order_id,
                about.correlation_id,
                &failure,
                &self.settings.instance,
            )
            .await
        {
            Ok(attempt) => attempt,
            Err(err) => {
                // No history without the database: retry later, unrecorded.
                tracing::warn!(message_id = at.message_id, error = %err, failure = failure.text, "could not record a failed attempt");
                let delay = self.settings.backoff.delay(1);
                return ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
            }
        };
        if failure.transient && attempt < self.settings.max_attempts {
            ConsumerCounters::count(&self.counters.retried);
            let delay = self.settings.backoff.delay(attempt);
            tracing::warn!(
                message_id = at.message_id, subject = at.subject, order_id = ?order_id, attempt,
                code = failure.code, error = failure.text, retry_in = ?delay,
                "attempt failed; retrying later"
            );
            return ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
        }
        let reason = if failure.transient {
            format!(
                "{attempt} attempts failed; last: {}: {}",
                failure.code, failure.text
            )
        } else {
            format!("{}: {}", failure.code, failure.text)
        };
        if let Err(err) = self
            .dead_letter(message, at, order_id, &reason, stream_sequence)
            .await
        {
            tracing::warn!(message_id = at.message_id, error = %err, "could not dead-letter; retrying later");
            let delay = self.settings.backoff.delay(attempt);
            return ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
        }
        ConsumerCounters::count(&self.counters.dead_lettered);
        tracing::error!(message_id = at.message_id, subject = at.subject, order_id = ?order_id, reason, "message dead-lettered");
        ack(message, AckKind::Ack, at.message_id).await;
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        order_id: Option<Uuid>,
        reason: &str,
        stream_sequence: u64,
    ) -> Result<(), async_nats::Error> {
        let history = self.handler.store.errors_for_message(at.message_id).await?;
        self.dead_letters
            .publish(DeadLetterDraft {
                source_subject: at.subject.to_owned(),
                source_sequence: stream_sequence,
                message_id: at.message_id.to_owned(),
                order_id: order_id.map(|id| id.to_string()),
                reason: reason.to_owned(),
                headers: message.headers.clone(),
                payload: message.payload.clone(),
                history,
            })
            .await?;
        if let Some(order_id) = order_id {
            self.handler
                .store
                .dead_lettered_mark(order_id, reason)
                .await?;
        }
        Ok(())
    }
}

async fn ack(message: &jetstream::Message, kind: AckKind, message_id: &str) {
    if let Err(err) = message.ack_with(kind).await {
        // The message comes back after the ack wait; the inbox makes that harmless.
        tracing::warn!(message_id, error = %err, "ack failed");
    }
}
