//! An order's status as a state machine with no I/O: [`decide`] takes the
//! status and one change — the customer's cancellation or one of the
//! processor's verdicts — and says what happens. The store carries it out
//! (its `WHERE` clauses only guard that the status is still the one
//! decided on).
//!
//! ```text
//! PENDING ── confirmed ─▶ CONFIRMED ── cancel ─▶ CANCELLED (the processor refunds)
//!    ├────── rejected ──▶ REJECTED
//!    └────── cancel ────▶ CANCELLED (the processor voids or refunds)
//! ```
//!
//! REJECTED and CANCELLED are final: verdicts that arrive later (a
//! confirmation racing a cancellation, a duplicate) change nothing; the
//! processor's own machine makes sure money follows the cancellation.

/// Where an order is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Confirmed,
        Self::Rejected,
        Self::Cancelled,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == stored)
    }

    /// Nothing can happen to the order any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Cancelled)
    }
}

/// What the processor decided about an order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusChange {
    Confirmed { payment_id: String },
    Rejected { reason: String },
    Refunded { payment_id: String },
}

/// One thing that happens to an order's status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// The customer cancels (CancelOrder).
    Cancel,
    /// A verdict from the processor.
    Verdict(StatusChange),
}

/// What a change does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The order moves to `status`, for `reason`; a cancellation also
    /// announces `OrderCancelled`.
    Move { status: OrderStatus, reason: String },
    /// Nothing moves, but the change is recorded as applied (a refund of a
    /// cancelled order).
    Note(String),
    /// Nothing to do, and why.
    Ignore(String),
    /// The customer asked for what the status no longer allows.
    Refuse,
}

/// The one decision: what `change` does to an order in `status`.
pub fn decide(status: OrderStatus, change: &Change) -> Decision {
    use OrderStatus::{Cancelled, Confirmed, Pending, Rejected};
    match (status, change) {
        (Pending | Confirmed, Change::Cancel) => Decision::Move {
            status: Cancelled,
            reason: String::new(),
        },
        (Rejected | Cancelled, Change::Cancel) => Decision::Refuse,
        (Pending, Change::Verdict(StatusChange::Confirmed { .. })) => Decision::Move {
            status: Confirmed,
            reason: String::new(),
        },
        (Pending, Change::Verdict(StatusChange::Rejected { reason })) => Decision::Move {
            status: Rejected,
            reason: reason.clone(),
        },
        (Cancelled, Change::Verdict(StatusChange::Refunded { payment_id })) => {
            Decision::Note(format!("refund of payment {payment_id} recorded"))
        }
        (status, Change::Verdict(verdict)) => Decision::Ignore(format!(
            "order is {}; {verdict:?} does not apply",
            status.as_str().to_lowercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed() -> Change {
        Change::Verdict(StatusChange::Confirmed {
            payment_id: "p".into(),
        })
    }

    #[test]
    fn status_names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }

    #[test]
    fn a_pending_order_takes_the_first_verdict_only() {
        assert_eq!(
            decide(OrderStatus::Pending, &confirmed()),
            Decision::Move {
                status: OrderStatus::Confirmed,
                reason: String::new()
            }
        );
        let rejected = Change::Verdict(StatusChange::Rejected {
            reason: "declined".into(),
        });
        assert!(matches!(
            decide(OrderStatus::Confirmed, &rejected),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(OrderStatus::Rejected, &confirmed()),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn only_live_orders_can_be_cancelled_and_cancelled_ones_stay_so() {
        for status in [OrderStatus::Pending, OrderStatus::Confirmed] {
            assert!(matches!(
                decide(status, &Change::Cancel),
                Decision::Move {
                    status: OrderStatus::Cancelled,
                    ..
                }
            ));
        }
        for status in [OrderStatus::Rejected, OrderStatus::Cancelled] {
            assert_eq!(decide(status, &Change::Cancel), Decision::Refuse);
        }
        assert!(matches!(
            decide(OrderStatus::Cancelled, &confirmed()),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(
                OrderStatus::Cancelled,
                &Change::Verdict(StatusChange::Refunded {
                    payment_id: "p".into()
                })
            ),
            Decision::Note(_)
        ));
    }
}
