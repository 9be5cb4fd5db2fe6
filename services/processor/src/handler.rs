//! What the processor does with one decoded message — the order's payment
//! life cycle:
//!
//! ```text
//! OrderPlaced      no record / RETRYING / DEAD_LETTERED → authorize
//!                      approved → CONFIRMED + OrderConfirmed
//!                      declined → REJECTED  + OrderRejected
//!                  CANCELLED (cancel won the race) + approved → REFUND_DUE → refund
//!                  REFUND_DUE → refund;  anything else → ignored
//! OrderCancelled   no record / RETRYING → deferred until the placement settles
//!                  CONFIRMED / REFUND_DUE → refund → REFUNDED + OrderRefunded
//!                  REJECTED / DEAD_LETTERED → CANCELLED (nothing to refund)
//!                  CANCELLED / REFUNDED → ignored
//! ```
//!
//! A payment call the open breaker refuses defers the message (NAK with
//! the breaker's remaining cool-down) without an error-history entry.
//! Payment calls happen outside any transaction; their outcome is settled
//! in one (see [`crate::store`]). Keys derived from the order make every
//! payment call idempotent, so a message handled twice — concurrently on two
//! replicas, or again after a crash — charges and refunds once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ordo_resilience::Backoff;

use uuid::Uuid;

use crate::messages::{CancelledOrder, Incoming, PlacedOrder};
use crate::payments::PaymentGateway;
use crate::processing::{Failure, ProcessingRecord, ProcessingState};
use crate::store::{MessageRef, ProcessingStore, Settled};

/// How a message was handled, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Settled: ack it.
    Settled(Settled),
    /// Not yet actionable (a cancellation before its order's payment
    /// settled): redeliver after this delay; not a failure.
    Deferred(Duration),
}

/// Handles decoded messages.
#[derive(Debug, Clone)]
pub struct Handler {
    pub store: ProcessingStore,
    pub payments: PaymentGateway,
    /// Delays of deferred messages, by delivery count.
    pub defer: Backoff,
    /// Messages deferred because the payments breaker was open (a metric).
    pub breaker_deferrals: Arc<AtomicU64>,
}

impl Handler {
    /// Handles one message; `delivered` counts its deliveries so far.
    pub async fn handle(
        &self,
        message: MessageRef<'_>,
        incoming: &Incoming,
        delivered: u32,
    ) -> Result<Handled, Failure> {
        let lookup = self
            .store
            .message_lookup(message.message_id, incoming.order_id())
            .await?;
        if lookup.seen {
            return Ok(Handled::Settled(Settled::Duplicate));
        }
        match incoming {
            Incoming::Placed(order) => self.placed(message, order, lookup.record).await,
            Incoming::Cancelled(order) => {
                self.cancelled(message, order, lookup.record, delivered)
                    .await
            }
        }
    }

    async fn placed(
        &self,
        message: MessageRef<'_>,
        order: &PlacedOrder,
        record: Option<ProcessingRecord>,
    ) -> Result<Handled, Failure> {
        let state = record.as_ref().map(|record| record.state);
        if state == Some(ProcessingState::RefundDue) {
            let payment_id = record
                .and_then(|record| record.payment_id)
                .unwrap_or_default();
            return self
                .refund(message, order.order_id, &order.correlation_id, &payment_id)
                .await;
        }
        if !ProcessingState::awaits_payment(state) {
            let why = format!(
                "order already {}",
                state.map_or("settled", ProcessingState::as_str)
            );
            return Ok(Handled::Settled(
                self.store.message_ignore(message, &why).await?,
            ));
        }
        let authorization = match self.payments.authorize(order).await {
            Ok(authorization) => authorization,
            Err(failure) => return self.defer_or_fail(order.order_id, failure).await,
        };
        match self
            .store
            .placed_settle(message, order, &authorization)
            .await?
        {
            Settled::RefundDue { payment_id } => {
                self.refund(message, order.order_id, &order.correlation_id, &payment_id)
                    .await
            }
            Settled::Raced => Ok(Handled::Deferred(self.defer.delay(1))),
            settled => Ok(Handled::Settled(settled)),
        }
    }

    async fn cancelled(
        &self,
        message: MessageRef<'_>,
        order: &CancelledOrder,
        record: Option<ProcessingRecord>,
        delivered: u32,
    ) -> Result<Handled, Failure> {
        let settled = match record.as_ref().map(|record| record.state) {
            None | Some(ProcessingState::Retrying) => {
                return Ok(Handled::Deferred(self.defer.delay(delivered)));
            }
            Some(ProcessingState::Confirmed | ProcessingState::RefundDue) => {
                let payment_id = record
                    .and_then(|record| record.payment_id)
                    .unwrap_or_default();
                return self
                    .refund(message, order.order_id, &order.correlation_id, &payment_id)
                    .await;
            }
            Some(ProcessingState::Rejected | ProcessingState::DeadLettered) => {
                self.store
                    .cancel_unpaid(message, order.order_id, &order.correlation_id)
                    .await?
            }
            Some(state @ (ProcessingState::Cancelled | ProcessingState::Refunded)) => {
                self.store
                    .message_ignore(message, &format!("order already {}", state.as_str()))
                    .await?
            }
        };
        Ok(match settled {
            Settled::Raced => Handled::Deferred(self.defer.delay(1)),
            settled => Handled::Settled(settled),
        })
    }

    /// A payment call refused by the open breaker is no attempt: note why
    /// the order waits and come back when the breaker half-opens.
    async fn defer_or_fail(&self, order_id: Uuid, failure: Failure) -> Result<Handled, Failure> {
        let Some(after) = failure.defer_for else {
            return Err(failure);
        };
        self.breaker_deferrals.fetch_add(1, Ordering::Relaxed);
        let reason = format!("deferred: {}: {}", failure.code, failure.text);
        if let Err(err) = self.store.processing_note(order_id, &reason).await {
            tracing::debug!(%order_id, error = %err, "could not note the deferral");
        }
        Ok(Handled::Deferred(after.max(Duration::from_millis(10))))
    }

    async fn refund(
        &self,
        message: MessageRef<'_>,
        order_id: Uuid,
        correlation_id: &str,
        payment_id: &str,
    ) -> Result<Handled, Failure> {
        if payment_id.is_empty() {
            return Err(Failure::permanent(
                "no_payment",
                format!("order {order_id} is due a refund but has no payment id"),
            ));
        }
        let refund_id = match self
            .payments
            .refund(order_id, payment_id, correlation_id)
            .await
        {
            Ok(refund_id) => refund_id,
            Err(failure) => return self.defer_or_fail(order_id, failure).await,
        };
        Ok(
            match self
                .store
                .refund_settle(message, order_id, correlation_id, payment_id, &refund_id)
                .await?
            {
                Settled::Raced => Handled::Deferred(self.defer.delay(1)),
                settled => Handled::Settled(settled),
            },
        )
    }
}
