//! What operators do to dead letters, as decisions with a reason and an
//! actor, each kept in the order's audit trail.
//!
//! - Redrive: the original goes back to its source subject (processed once
//!   more, under a new message id), the dead letter is removed.
//! - Purge: the order is settled first — the payment machine decides how
//!   (`Input::Purge`): a given-up placement is voided and rejected, a due
//!   void or refund is made — and only then is the dead letter removed. If
//!   the provider cannot confirm that nothing stays charged, the purge is
//!   refused and the dead letter stays.

use ordo_lifecycle::payment::{self, Input, Record, Stage, Then};
use uuid::Uuid;

use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetters, Redriven};
use crate::payments::PaymentGateway;
use crate::processing::{AuditEntry, Failure};
use crate::store::{OrderRef, ProcessingStore, RecordWrite};

/// Decisions made again because the record moved, before a purge gives up.
const MAX_ROUNDS: usize = 16;

/// Who decided, and why.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// The admin token's name.
    pub actor: &'a str,
    pub reason: &'a str,
}

/// Why an operator's decision could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no dead letter {0}")]
    NotFound(u64),
    #[error("the dead-letter stream is unavailable: {0}")]
    DeadLetters(DeadLetterError),
    #[error("the processor's database is unavailable: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The provider could not say that nothing stays charged.
    #[error("the payment provider could not settle the order ({}: {})", .0.code, .0.text)]
    Provider(Failure),
    #[error("the order's record kept changing; try again")]
    Contention,
}

/// How a purge left the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The order's stage after the purge; `None` for a message about no order.
    pub stage: Option<Stage>,
    pub outcome: String,
}

/// Carries out redrives and purges.
#[derive(Debug, Clone)]
pub struct Operator {
    pub store: ProcessingStore,
    pub payments: PaymentGateway,
    pub dead_letters: DeadLetters,
}

impl Operator {
    async fn dead_letter(&self, id: u64) -> Result<DeadLetter, OperatorError> {
        self.dead_letters
            .get(id)
            .await
            .map_err(OperatorError::DeadLetters)?
            .ok_or(OperatorError::NotFound(id))
    }

    /// Sends dead letter `id` back to be processed once more.
    pub async fn redrive(
        &self,
        id: u64,
        decision: Decision<'_>,
    ) -> Result<Redriven, OperatorError> {
        let dead_letter = self.dead_letter(id).await?;
        let audit = audit_of(&dead_letter, "redrive", decision);
        let redriven = self
            .dead_letters
            .redrive(dead_letter)
            .await
            .map_err(OperatorError::DeadLetters)?;
        let audit = AuditEntry {
            outcome: format!(
                "republished to {} as {} (sequence {})",
                redriven.subject, redriven.message_id, redriven.stream_sequence
            ),
            ..audit
        };
        if let Err(err) = self.store.audit_append(&audit).await {
            tracing::error!(id, error = %err, reason = decision.reason, actor = decision.actor, "redrive done but not audited");
        }
        Ok(redriven)
    }

    /// What a purge of `dead_letter` would do to its order, decided by the
    /// payment machine as the purge itself would first decide it, without
    /// calling the provider or writing anything.
    pub async fn purge_preview(&self, dead_letter: &DeadLetter) -> Result<String, OperatorError> {
        let Some(order_id) = dead_letter
            .order_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return Ok("would remove it: it is about no order".to_owned());
        };
        let stored = self.store.processing_get(order_id).await?;
        let read = stored
            .as_ref()
            .map_or_else(Record::new, |stored| stored.machine());
        let step = payment::next(
            &read,
            &Input::Purge {
                reason: String::new(),
                answer: None,
            },
        );
        Ok(match step.then {
            Then::Call(call) => format!(
                "would ask the payment provider to {} for order {order_id} (now {}), then settle it \
                 as the answer says, then remove the dead letter",
                match call {
                    payment::Call::Authorize => "authorize".to_owned(),
                    payment::Call::Void => "void the payment".to_owned(),
                    payment::Call::Refund { payment_id } => format!("refund payment {payment_id}"),
                },
                read.stage.as_str()
            ),
            Then::Settle { verdict, outcome } => {
                let what = match outcome {
                    payment::Outcome::Applied(what) | payment::Outcome::Ignored(what) => what,
                };
                let announced = match verdict {
                    Some(payment::Verdict::Confirmed { .. }) => ", announcing orders.confirmed",
                    Some(payment::Verdict::Rejected { .. }) => ", announcing orders.rejected",
                    Some(payment::Verdict::Refunded { .. }) => ", announcing orders.refunded",
                    None => "",
                };
                format!(
                    "would settle order {order_id} (now {}): {what}{announced}, then remove the dead letter",
                    read.stage.as_str()
                )
            }
        })
    }

    /// Settles dead letter `id`'s order, then removes the dead letter.
    pub async fn purge(&self, id: u64, decision: Decision<'_>) -> Result<Purged, OperatorError> {
        let dead_letter = self.dead_letter(id).await?;
        let audit = audit_of(&dead_letter, "purge", decision);
        let order_id = audit.order_id;
        let purged = match order_id {
            Some(order_id) => {
                let correlation_id = dead_letter
                    .headers
                    .get(ordo_telemetry::CORRELATION_HEADER)
                    .cloned()
                    .unwrap_or_default();
                let order = OrderRef {
                    order_id,
                    correlation_id: &correlation_id,
                };
                self.settle(order, decision.reason, audit).await?
            }
            None => {
                let outcome = "no order to settle".to_owned();
                self.store
                    .audit_append(&AuditEntry {
                        outcome: outcome.clone(),
                        ..audit
                    })
                    .await?;
                Purged {
                    stage: None,
                    outcome,
                }
            }
        };
        self.dead_letters
            .purge(id)
            .await
            .map_err(OperatorError::DeadLetters)?;
        tracing::info!(id, order_id = ?order_id, actor = decision.actor, reason = decision.reason, outcome = purged.outcome, "dead letter purged");
        Ok(purged)
    }

    /// Runs the purge through the payment machine until it settles.
    async fn settle(
        &self,
        order: OrderRef<'_>,
        reason: &str,
        audit: AuditEntry,
    ) -> Result<Purged, OperatorError> {
        let mut input = Input::Purge {
            reason: reason.to_owned(),
            answer: None,
        };
        for _ in 0..MAX_ROUNDS {
            let stored = self.store.processing_get(order.order_id).await?;
            let read = stored
                .as_ref()
                .map_or_else(Record::new, |stored| stored.machine());
            let expected = stored.as_ref().map(|stored| stored.version);
            let step = payment::next(&read, &input);
            let write = RecordWrite {
                order,
                expected,
                record: &step.record,
            };
            match &step.then {
                Then::Call(call) => {
                    if step.record != read && !self.store.record_save(write).await? {
                        continue;
                    }
                    let answer = self
                        .payments
                        .call(order.order_id, order.correlation_id, None, call)
                        .await
                        .map_err(OperatorError::Provider)?;
                    input = Input::Purge {
                        reason: reason.to_owned(),
                        answer: Some(answer),
                    };
                }
                Then::Settle { verdict, outcome } => {
                    let outcome = match outcome {
                        payment::Outcome::Applied(what) | payment::Outcome::Ignored(what) => {
                            what.clone()
                        }
                    };
                    let audit = AuditEntry {
                        outcome: outcome.clone(),
                        ..audit.clone()
                    };
                    if read == Record::new() && step.record == read {
                        // Nothing recorded of the order, nothing to write.
                        self.store.audit_append(&audit).await?;
                    } else if !self
                        .store
                        .record_settle_audited(write, verdict.as_ref(), &audit)
                        .await?
                    {
                        continue;
                    }
                    return Ok(Purged {
                        stage: Some(step.record.stage),
                        outcome,
                    });
                }
            }
        }
        Err(OperatorError::Contention)
    }
}

fn audit_of(dead_letter: &DeadLetter, action: &str, decision: Decision<'_>) -> AuditEntry {
    AuditEntry {
        order_id: dead_letter
            .order_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok()),
        dead_letter_id: dead_letter.id,
        message_id: dead_letter.message_id.clone(),
        subject: dead_letter.source_subject.clone(),
        action: action.to_owned(),
        actor: decision.actor.to_owned(),
        reason: decision.reason.to_owned(),
        outcome: String::new(),
        occurred_at: chrono::Utc::now(),
    }
}
