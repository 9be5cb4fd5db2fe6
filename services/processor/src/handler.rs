//! Carries out what the payment machine (`ordo_lifecycle::payment`)
//! decides for one decoded message:
//!
//! ```text
//! look up (inbox + record) ─▶ next(record, input) ─┬─ call ─▶ [save the record if it changed] ─▶ provider ─▶ input = its answer ─┐
//!          ▲                                        └─ settle ─▶ one statement: record · inbox row · verdict event ─▶ done      │
//!          └──────────── the record moved since it was read: read again, decide again ◀─────────────────────────────────────────┘
//! ```
//!
//! Payment calls happen outside any transaction; their answers are settled
//! in one statement (see [`crate::store`]). Keys derived from the order make
//! every call idempotent, so a message handled twice — concurrently on two
//! replicas, or again after a crash or a lost answer — charges and refunds
//! once. A call the open breaker refuses defers the message (NAK with the
//! breaker's remaining cool-down) without an error-history entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ordo_lifecycle::payment::{self, Input, Kind, Record, Then};

use crate::messages::Incoming;
use crate::payments::PaymentGateway;
use crate::processing::Failure;
use crate::store::{Lookup, MessageRef, OrderRef, ProcessingStore, RecordWrite, Settled};

/// Decisions made again because the record moved under us, before the
/// attempt fails (another message about the same order keeps winning).
const MAX_ROUNDS: usize = 16;

/// How a message was handled, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Settled: ack it.
    Settled(Settled),
    /// Not yet actionable (the payments breaker is open): redeliver after
    /// this delay; not a failure.
    Deferred(Duration),
}

/// Handles decoded messages.
#[derive(Debug, Clone)]
pub struct Handler {
    pub store: ProcessingStore,
    pub payments: PaymentGateway,
    /// Messages deferred because the payments breaker was open (a metric).
    pub breaker_deferrals: Arc<AtomicU64>,
}

/// Which input a message of this kind is.
pub fn input_of(kind: Kind) -> Input {
    match kind {
        Kind::Placement => Input::Placed,
        Kind::Cancellation => Input::Cancelled,
    }
}

impl Handler {
    /// Handles one message until the machine settles it.
    pub async fn handle(
        &self,
        message: MessageRef<'_>,
        incoming: &Incoming,
    ) -> Result<Handled, Failure> {
        let order = OrderRef {
            order_id: incoming.order_id(),
            correlation_id: incoming.correlation_id(),
        };
        let mut input = input_of(incoming.kind());
        let mut known = Known::of(self.look_up(message, order).await?);
        for _ in 0..MAX_ROUNDS {
            if known.seen {
                return Ok(Handled::Settled(Settled::Duplicate));
            }
            let step = payment::next(&known.record, &input);
            let write = RecordWrite {
                order,
                expected: known.version,
                record: &step.record,
            };
            match &step.then {
                Then::Call(call) => {
                    if step.record != known.record {
                        if !self.store.record_save(write).await? {
                            known = Known::of(self.look_up(message, order).await?);
                            continue;
                        }
                        known.saved(step.record.clone());
                    }
                    let answer = match self
                        .payments
                        .call(
                            order.order_id,
                            order.correlation_id,
                            incoming.placed(),
                            call,
                        )
                        .await
                    {
                        Ok(answer) => answer,
                        Err(failure) => return self.defer_or_fail(order, failure).await,
                    };
                    // Decided next on what was known; the settling write
                    // finds out if the record moved meanwhile.
                    input = Input::Answer(answer);
                }
                Then::Settle { verdict, outcome } => {
                    match self
                        .store
                        .message_settle(message, write, verdict.as_ref(), outcome)
                        .await?
                    {
                        Some(settled) => return Ok(Handled::Settled(settled)),
                        None => known = Known::of(self.look_up(message, order).await?),
                    }
                }
            }
        }
        Err(contention(order))
    }

    async fn look_up(
        &self,
        message: MessageRef<'_>,
        order: OrderRef<'_>,
    ) -> Result<Lookup, Failure> {
        Ok(self
            .store
            .message_lookup(message.message_id, order.order_id)
            .await?)
    }

    /// A payment call refused by the open breaker is no attempt: note why
    /// the order waits and come back when the breaker half-opens.
    async fn defer_or_fail(
        &self,
        order: OrderRef<'_>,
        failure: Failure,
    ) -> Result<Handled, Failure> {
        let Some(after) = failure.defer_for else {
            return Err(failure);
        };
        self.breaker_deferrals.fetch_add(1, Ordering::Relaxed);
        let reason = format!("deferred: {}: {}", failure.code, failure.text);
        if let Err(err) = self
            .store
            .processing_deferred(order.order_id, &reason)
            .await
        {
            tracing::debug!(order_id = %order.order_id, error = %err, "could not note the deferral");
        }
        Ok(Handled::Deferred(after.max(Duration::from_millis(10))))
    }

    /// Records a failed attempt at a message (about `about`'s order, whose
    /// record changes as the machine decides for such a failure); the
    /// attempt number, 1 for the first.
    pub async fn attempt_failed(
        &self,
        message: MessageRef<'_>,
        about: Option<(OrderRef<'_>, Kind)>,
        correlation_id: &str,
        failure: &Failure,
        instance: &str,
    ) -> Result<u32, Failure> {
        let Some((order, kind)) = about else {
            return self
                .store
                .attempt_record(message, correlation_id, None, failure, instance)
                .await?
                .ok_or_else(|| {
                    Failure::transient("database", "the error history was not written")
                });
        };
        let input = Input::Failed {
            kind,
            reason: format!("{}: {}", failure.code, failure.text),
        };
        for _ in 0..MAX_ROUNDS {
            let (record, expected) = self.current(order).await?;
            let step = payment::next(&record, &input);
            let write = RecordWrite {
                order,
                expected,
                record: &step.record,
            };
            if let Some(attempt) = self
                .store
                .attempt_record(message, correlation_id, Some(write), failure, instance)
                .await?
            {
                return Ok(attempt);
            }
        }
        Err(contention(order))
    }

    /// Records that a message about `order` was given up (dead-lettered).
    pub async fn gave_up(
        &self,
        order: OrderRef<'_>,
        kind: Kind,
        reason: &str,
    ) -> Result<(), Failure> {
        let input = Input::GaveUp {
            kind,
            reason: reason.to_owned(),
        };
        for _ in 0..MAX_ROUNDS {
            let (record, expected) = self.current(order).await?;
            let step = payment::next(&record, &input);
            let write = RecordWrite {
                order,
                expected,
                record: &step.record,
            };
            if self.store.record_save(write).await? {
                return Ok(());
            }
        }
        Err(contention(order))
    }

    /// The order's record as the machine sees it, and its version.
    async fn current(&self, order: OrderRef<'_>) -> Result<(Record, Option<i64>), Failure> {
        let stored = self.store.processing_get(order.order_id).await?;
        Ok(stored.map_or((Record::new(), None), |stored| {
            (stored.machine(), Some(stored.version))
        }))
    }
}

/// What a handler knows of the order while it works on a message.
struct Known {
    seen: bool,
    record: Record,
    /// `None` while there is no record.
    version: Option<i64>,
}

impl Known {
    fn of(lookup: Lookup) -> Self {
        Self {
            seen: lookup.seen,
            record: lookup.machine(),
            version: lookup.version(),
        }
    }

    /// The record was written as `record`: a new row starts at version 0,
    /// every update adds one.
    fn saved(&mut self, record: Record) {
        self.record = record;
        self.version = Some(self.version.map_or(0, |version| version + 1));
    }
}

fn contention(order: OrderRef<'_>) -> Failure {
    Failure::transient(
        "contention",
        format!(
            "the record of order {} kept changing while this message was settled",
            order.order_id
        ),
    )
}
