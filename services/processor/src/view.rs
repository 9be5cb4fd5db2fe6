//! What the processor shows an operator through
//! `ordo.operator.v1.OperatorService` beyond its outbox and inbox: its
//! durable consumers, its dead-letter stream and its payments breaker
//! (`GetStatus`), and its record of an order — the state, the failed
//! attempts, the deferrals, the payments made, the operators' decisions
//! (`GetOrderTrail`).

use std::sync::Arc;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use ordo_outbox::StreamSettings;
use ordo_outbox::operator::{ServiceView, consumer_status, entry, unavailable};
use ordo_proto::operator::v1 as api;
use ordo_resilience::CircuitBreaker;
use tonic::Status;
use uuid::Uuid;

use crate::dead_letter::DeadLetters;
use crate::processing::{AuditEntry, ErrorEntry, ProcessingRecord};
use crate::store::{Deferrals, ProcessingStore};

/// The processor's part of the operator view.
#[derive(Clone)]
pub struct ProcessorView {
    pub store: ProcessingStore,
    pub jetstream: jetstream::Context,
    pub stream: StreamSettings,
    pub dead_letters: DeadLetters,
    pub payments_breaker: Arc<CircuitBreaker>,
}

/// The processor's durable consumers, one per subject it takes.
pub const CONSUMERS: [&str; 2] = ["processor-placed", "processor-cancelled"];

#[tonic::async_trait]
impl ServiceView for ProcessorView {
    async fn status(&self, status: &mut api::GetStatusResponse) {
        for durable in CONSUMERS {
            match consumer_status(&self.jetstream, &self.stream.name, durable).await {
                Ok(consumer) => status.consumers.push(consumer),
                Err(why) => status.unavailable.push(format!("consumers: {why}")),
            }
        }
        match tokio::time::timeout(
            ordo_outbox::operator::NATS_ASK_TIMEOUT,
            self.dead_letters.status(),
        )
        .await
        {
            Ok(Ok(dead_letters)) => status.dead_letters.push(dead_letters),
            Ok(Err(err)) => status.unavailable.push(format!("dead letters: {err}")),
            Err(_) => status
                .unavailable
                .push("dead letters: no answer from NATS".to_owned()),
        }
        status.breakers.push(api::BreakerStatus {
            name: "payments".to_owned(),
            state: self.payments_breaker.state().name().to_owned(),
        });
    }

    async fn order_trail(&self, order_id: Uuid) -> Result<Vec<api::TrailEntry>, Status> {
        let (history, deferrals) = futures::try_join!(
            self.store.order_history(order_id),
            self.store.deferrals_of(order_id),
        )
        .map_err(unavailable)?;
        Ok(order_trail(
            history.record.as_ref(),
            &history.errors,
            &history.audit,
            deferrals.as_ref(),
        ))
    }
}

/// The processor's records of one order as trail entries (unsorted).
pub fn order_trail(
    record: Option<&ProcessingRecord>,
    errors: &[ErrorEntry],
    audit: &[AuditEntry],
    deferrals: Option<&Deferrals>,
) -> Vec<api::TrailEntry> {
    let mut entries = Vec::with_capacity(errors.len() + audit.len() + 2);
    for error in errors {
        entries.push(api::TrailEntry {
            message_id: error.message_id.clone(),
            subject: error.subject.clone(),
            actor: error.instance.clone(),
            code: error.code.clone(),
            correlation_id: error.correlation_id.clone(),
            ..entry(
                error.occurred_at,
                "attempt_failed",
                format!(
                    "attempt {} at {} failed: {}: {}",
                    error.attempt, error.subject, error.code, error.text
                ),
            )
        });
    }
    if let Some(deferrals) = deferrals {
        entries.push(entry(
            deferrals.first_at,
            "deferred",
            "payment call deferred: the payments breaker is open (no attempt counted)",
        ));
        if deferrals.count > 1 {
            entries.push(entry(
                deferrals.last_at,
                "deferred",
                format!(
                    "payment call deferred {} time(s) in all; last: {}",
                    deferrals.count, deferrals.last_reason
                ),
            ));
        }
    }
    for decision in audit {
        entries.push(api::TrailEntry {
            message_id: decision.message_id.clone(),
            subject: decision.subject.clone(),
            actor: decision.actor.clone(),
            ..entry(
                decision.occurred_at,
                "operator",
                format!(
                    "{} of dead letter {} ({}): {}; reason: {}",
                    decision.action,
                    decision.dead_letter_id,
                    decision.subject,
                    decision.outcome,
                    decision.reason
                ),
            )
        });
    }
    if let Some(record) = record {
        entries.push(api::TrailEntry {
            correlation_id: record.correlation_id.clone(),
            ..entry(record.updated_at, "state", record_text(record))
        });
    }
    entries
}

fn record_text(record: &ProcessingRecord) -> String {
    let mut text = format!("processing state {}", record.state.as_str());
    if let Some(payment_id) = &record.payment_id {
        text.push_str(&format!("; payment {payment_id}"));
    }
    if let Some(refund_id) = &record.refund_id {
        text.push_str(&format!("; refund {refund_id}"));
    }
    if !record.status_reason.is_empty() {
        text.push_str(&format!("; {}", record.status_reason));
    }
    text.push_str(&format!(
        "; {} failed attempt(s); last change {}",
        record.attempts,
        at(record.updated_at)
    ));
    text
}

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_lifecycle::payment::Stage;

    fn record() -> ProcessingRecord {
        ProcessingRecord {
            order_id: Uuid::nil(),
            state: Stage::Confirmed,
            attempts: 2,
            payment_id: Some("pay-1".into()),
            refund_id: None,
            status_reason: String::new(),
            correlation_id: "corr-1".into(),
            updated_at: Utc::now(),
            version: 3,
        }
    }

    #[test]
    fn every_failed_attempt_decision_and_the_state_are_entries() {
        let now = Utc::now();
        let error = ErrorEntry {
            message_id: "m1".into(),
            subject: "orders.placed".into(),
            attempt: 1,
            occurred_at: now,
            code: "payment_timeout".into(),
            text: "deadline exceeded".into(),
            instance: "proc-a".into(),
            correlation_id: "corr-1".into(),
        };
        let decision = AuditEntry {
            order_id: Some(Uuid::nil()),
            dead_letter_id: 7,
            message_id: "m1".into(),
            subject: "orders.placed".into(),
            action: "redrive".into(),
            actor: "oncall".into(),
            reason: "provider back".into(),
            outcome: "redriven".into(),
            occurred_at: now,
        };
        let deferrals = Deferrals {
            count: 3,
            first_at: now,
            last_at: now,
            last_reason: "deferred: payments_circuit_open: open".into(),
        };
        let entries = order_trail(Some(&record()), &[error], &[decision], Some(&deferrals));
        let kinds: Vec<&str> = entries.iter().map(|entry| entry.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "attempt_failed",
                "deferred",
                "deferred",
                "operator",
                "state"
            ]
        );
        assert_eq!(entries[0].code, "payment_timeout");
        assert_eq!(entries[0].actor, "proc-a");
        assert!(entries[2].text.contains("3 time(s)"), "{}", entries[2].text);
        assert_eq!(entries[3].actor, "oncall");
        assert!(entries[3].text.contains("provider back"));
        assert!(
            entries[4].text.contains("payment pay-1"),
            "{}",
            entries[4].text
        );
    }

    #[test]
    fn an_unknown_order_has_no_entries() {
        assert!(order_trail(None, &[], &[], None).is_empty());
    }
}
