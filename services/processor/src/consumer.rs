//! The durable pull consumers that feed orders to the [`Handler`], and what
//! becomes of each message: ack, NAK with a delay, or dead letter.
//!
//! One durable consumer per subject (`processor-placed`,
//! `processor-cancelled`; one filter subject each, which every JetStream
//! server supports), explicit acks, shared by every replica. At start-up
//! each is created or updated to the configured settings (ack wait,
//! delivery cap, acks pending), so a changed setting reaches the server.
//! Per message:
//!
//! - settled (applied, ignored, duplicate) → ack;
//! - deferred (the payments breaker is open) → NAK with the breaker's
//!   cool-down, no history entry;
//! - failed → the attempt is recorded (one error-history entry, and the
//!   record's change the payment machine decides for a failure); then
//!   [`after_failure`] decides: NAK with jittered exponential backoff, or
//!   give up → dead letter with the whole history, the record told, ack;
//! - undecodable → given up at once.
//!
//! Attempts are counted in the database, so JetStream's delivery cap
//! (`PROCESSOR_MAX_DELIVER`) is only a backstop, unlimited by default.
//! When it is set, a message on its last allowed delivery is never let go
//! unsettled: a deferral or failure there is given up, and each step of
//! that (recording the attempt, the dead letter, the record) is retried in
//! place until it succeeds — JetStream would not deliver it again.
//!
//! On stop no new message is taken and those in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::{StreamExt as _, TryStreamExt as _};
use ordo_lifecycle::payment::Kind;
use ordo_outbox::StreamSettings;
use ordo_service_kit::metrics::ConsumerCounters;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::dead_letter::{DeadLetterDraft, DeadLetters};
use crate::handler::{Handled, Handler};
use crate::messages::{Incoming, decode};
use crate::processing::Failure;
use crate::settings::ConsumerSettings;
use crate::store::{MessageRef, OrderRef, Settled};

const KINDS: [&str; 2] = ["placed", "cancelled"];
/// The longest wait between in-place retries on a last delivery.
const HOLD_MAX: Duration = Duration::from_secs(5);

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
    order: Option<(OrderRef<'a>, Kind)>,
    correlation_id: &'a str,
}

/// Which delivery of a message this is.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    stream_sequence: u64,
    /// JetStream will not deliver it again.
    last: bool,
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

/// What becomes of a message after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// NAK it; it comes back after the backoff for this attempt.
    Retry { attempt: u32 },
    /// Dead-letter it, for this reason.
    GiveUp { reason: String },
}

/// The one decision on a failed attempt: retry while the failure is
/// transient, attempts remain and JetStream will deliver it again.
pub fn after_failure(
    failure: &Failure,
    attempt: u32,
    max_attempts: u32,
    last_delivery: bool,
) -> AfterFailure {
    let last = format!("{}: {}", failure.code, failure.text);
    if !failure.transient {
        return AfterFailure::GiveUp { reason: last };
    }
    if attempt >= max_attempts {
        return AfterFailure::GiveUp {
            reason: format!("{attempt} attempts failed; last: {last}"),
        };
    }
    if last_delivery {
        return AfterFailure::GiveUp {
            reason: format!("its last allowed delivery (PROCESSOR_MAX_DELIVER) failed: {last}"),
        };
    }
    AfterFailure::Retry { attempt }
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

    /// The durable consumer for `kind` as configured.
    fn consumer_config(&self, kind: &str) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(format!("processor-{kind}")),
            filter_subject: self.stream.subject_for(&format!("orders.{kind}")),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: self.settings.max_deliver.map_or(-1, i64::from),
            max_ack_pending: i64::try_from(self.settings.concurrency * 4).unwrap_or(1024),
            ..Default::default()
        }
    }

    async fn consume(&self, mut stop: watch::Receiver<bool>) -> Result<(), async_nats::Error> {
        let stream = self.jetstream.get_stream(&self.stream.name).await?;
        self.dead_letters.ensure().await?;
        let mut feeds = Vec::new();
        for kind in KINDS {
            let config = self.consumer_config(kind);
            // Create, or bring an existing durable consumer in line with
            // the settings (a changed PROCESSOR_ACK_WAIT, _MAX_DELIVER or
            // _CONCURRENCY must reach the server).
            let consumer: consumer::PullConsumer =
                stream.create_consumer(config.clone()).await.map_err(|err| {
                    format!(
                        "durable consumer processor-{kind} could not be brought to the settings \
                         (PROCESSOR_ACK_WAIT {:?}, PROCESSOR_MAX_DELIVER {}, acks pending {}): {err}",
                        config.ack_wait, config.max_deliver, config.max_ack_pending
                    )
                })?;
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
            .and_then(|value| ordo_telemetry::valid_correlation_id(value.as_str()))
            .unwrap_or_default()
            .to_owned();
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
        let (delivered, stream_sequence, published_at) =
            message.info().map_or((1, 0, None), |info| {
                (
                    u32::try_from(info.delivered).unwrap_or(u32::MAX),
                    info.stream_sequence,
                    ordo_inbox::published_at(info.published.unix_timestamp_nanos()),
                )
            });
        let delivery = Delivery {
            stream_sequence,
            last: self
                .settings
                .max_deliver
                .is_some_and(|max_deliver| delivered >= max_deliver),
        };
        let message_id = ordo_inbox::message_key(
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                .map(async_nats::HeaderValue::as_str),
            &self.stream.name,
            stream_sequence,
        );
        let at = MessageRef {
            message_id: &message_id,
            subject: &subject,
            stream_sequence,
            published_at,
        };
        let incoming = match decode(&subject, &message.payload) {
            Ok(incoming) => incoming,
            Err(why) => {
                let failure = Failure::permanent("undecodable", why);
                let about = About {
                    order: None,
                    correlation_id: &correlation_id,
                };
                return self.fail(&message, at, about, failure, delivery).await;
            }
        };
        let correlation_id = if incoming.correlation_id().is_empty() {
            correlation_id
        } else {
            incoming.correlation_id().to_owned()
        };
        let order = OrderRef {
            order_id: incoming.order_id(),
            correlation_id: &correlation_id,
        };
        let about = About {
            order: Some((order, incoming.kind())),
            correlation_id: &correlation_id,
        };
        match self.handler.handle(at, &incoming).await {
            Ok(Handled::Settled(settled)) => self.settled(&message, at, &incoming, settled).await,
            Ok(Handled::Deferred(delay)) if !delivery.last => {
                ConsumerCounters::count(&self.counters.deferred);
                tracing::debug!(message_id, subject, order_id = %order.order_id, ?delay, "message deferred");
                ack(&message, AckKind::Nak(Some(delay)), &message_id).await;
            }
            Ok(Handled::Deferred(_)) => {
                let reason = "deferred on its last allowed delivery (PROCESSOR_MAX_DELIVER)";
                self.give_up(&message, at, about, reason, delivery).await;
            }
            Err(failure) => self.fail(&message, at, about, failure, delivery).await,
        }
    }

    async fn settled(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        incoming: &Incoming,
        settled: Settled,
    ) {
        let (message_id, subject, order_id) = (at.message_id, at.subject, incoming.order_id());
        let correlation_id = incoming.correlation_id();
        match &settled {
            Settled::Applied(what) => {
                ConsumerCounters::count(&self.counters.applied);
                tracing::info!(message_id, subject, %order_id, correlation_id, what, "message applied");
            }
            Settled::Ignored(why) => {
                ConsumerCounters::count(&self.counters.ignored);
                tracing::info!(message_id, subject, %order_id, correlation_id, why, "message ignored");
            }
            Settled::Duplicate => {
                ConsumerCounters::count(&self.counters.duplicates);
                tracing::info!(message_id, subject, %order_id, correlation_id, "duplicate message skipped");
            }
        }
        if self.faults.take_lost_ack() {
            tracing::warn!(message_id, "fault: ack dropped after commit");
            return;
        }
        ack(message, AckKind::Ack, message_id).await;
    }

    /// Records a failed attempt, then retries later or gives up.
    async fn fail(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        about: About<'_>,
        failure: Failure,
        delivery: Delivery,
    ) {
        let mut held = 0;
        let attempt = loop {
            match self
                .handler
                .attempt_failed(
                    at,
                    about.order,
                    about.correlation_id,
                    &failure,
                    &self.settings.instance,
                )
                .await
            {
                Ok(attempt) => break attempt,
                Err(err) if !delivery.last => {
                    // No history without the database: retry later, unrecorded.
                    tracing::warn!(message_id = at.message_id, error = %err.text, failure = failure.text, "could not record a failed attempt");
                    let delay = self.settings.backoff.delay(1);
                    return ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
                }
                Err(err) => {
                    tracing::warn!(message_id = at.message_id, error = %err.text, "could not record a failed attempt on the last delivery; trying again");
                    held += 1;
                    self.hold(message, held).await;
                }
            }
        };
        match after_failure(&failure, attempt, self.settings.max_attempts, delivery.last) {
            AfterFailure::Retry { attempt } => {
                ConsumerCounters::count(&self.counters.retried);
                let delay = self.settings.backoff.delay(attempt);
                tracing::warn!(
                    message_id = at.message_id, subject = at.subject, attempt,
                    code = failure.code, error = failure.text, retry_in = ?delay,
                    "attempt failed; retrying later"
                );
                ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
            }
            AfterFailure::GiveUp { reason } => {
                self.give_up(message, at, about, &reason, delivery).await;
            }
        }
    }

    /// Dead-letters the message and tells its order's record, then acks.
    /// On the last delivery every step is retried until it succeeds.
    async fn give_up(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        about: About<'_>,
        reason: &str,
        delivery: Delivery,
    ) {
        let mut held = 0;
        loop {
            match self.dead_letter(message, at, about, reason, delivery).await {
                Ok(()) => break,
                Err(err) if !delivery.last => {
                    tracing::warn!(message_id = at.message_id, error = %err, "could not dead-letter; retrying later");
                    let delay = self.settings.backoff.delay(1);
                    return ack(message, AckKind::Nak(Some(delay)), at.message_id).await;
                }
                Err(err) => {
                    tracing::warn!(message_id = at.message_id, error = %err, "could not dead-letter on the last delivery; trying again");
                    held += 1;
                    self.hold(message, held).await;
                }
            }
        }
        ConsumerCounters::count(&self.counters.dead_lettered);
        tracing::error!(
            message_id = at.message_id,
            subject = at.subject,
            reason,
            "message dead-lettered"
        );
        ack(message, AckKind::Ack, at.message_id).await;
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        at: MessageRef<'_>,
        about: About<'_>,
        reason: &str,
        delivery: Delivery,
    ) -> Result<(), async_nats::Error> {
        let history = self.handler.store.errors_for_message(at.message_id).await?;
        self.dead_letters
            .publish(DeadLetterDraft {
                source_subject: at.subject.to_owned(),
                source_sequence: delivery.stream_sequence,
                message_id: at.message_id.to_owned(),
                order_id: about.order.map(|(order, _)| order.order_id.to_string()),
                reason: reason.to_owned(),
                headers: message.headers.clone(),
                payload: message.payload.clone(),
                history,
            })
            .await?;
        if let Some((order, kind)) = about.order {
            self.handler
                .gave_up(order, kind, reason)
                .await
                .map_err(|failure| failure.text)?;
        }
        Ok(())
    }

    /// Waits before trying a step of the last delivery again, telling
    /// JetStream the message is still being worked on.
    async fn hold(&self, message: &jetstream::Message, held: u32) {
        let delay = self.settings.backoff.delay(held).min(HOLD_MAX);
        tokio::time::sleep(delay).await;
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

async fn ack(message: &jetstream::Message, kind: AckKind, message_id: &str) {
    if let Err(err) = message.ack_with(kind).await {
        // The message comes back after the ack wait; the inbox makes that harmless.
        tracing::warn!(message_id, error = %err, "ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retried_until_the_attempts_or_deliveries_run_out() {
        let outage = Failure::transient("payment_unavailable", "down");
        assert_eq!(
            after_failure(&outage, 1, 5, false),
            AfterFailure::Retry { attempt: 1 }
        );
        let AfterFailure::GiveUp { reason } = after_failure(&outage, 5, 5, false) else {
            panic!("five failed attempts are given up");
        };
        assert!(reason.starts_with("5 attempts failed; last: payment_unavailable"));
        let AfterFailure::GiveUp { reason } = after_failure(&outage, 2, 5, true) else {
            panic!("the last delivery is given up, not NAKed into oblivion");
        };
        assert!(reason.contains("PROCESSOR_MAX_DELIVER"), "{reason}");
    }

    #[test]
    fn a_permanent_failure_is_given_up_at_once() {
        let undecodable = Failure::permanent("undecodable", "not an OrderPlaced");
        assert_eq!(
            after_failure(&undecodable, 1, 5, false),
            AfterFailure::GiveUp {
                reason: "undecodable: not an OrderPlaced".into()
            }
        );
    }
}
