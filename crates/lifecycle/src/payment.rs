//! The processor's record of an order as a state machine with no I/O:
//! [`next`] takes the record and one input and returns the new record and
//! what to do. The store and the handlers carry that out; nothing else
//! decides what happens to an order's money.
//!
//! ```text
//!                 placed ─▶ authorize ─ approved ─▶ CONFIRMED ── cancelled ─▶ REFUND_DUE ─ refund ─▶ REFUNDED
//!   NEW / AUTHORIZING ─┤                └ declined ─▶ REJECTED ── cancelled ─▶ CANCELLED
//!                      ├─ attempts spent ─▶ DEAD_LETTERED ── cancelled ─▶ VOID_DUE ─ void ─▶ CANCELLED / REFUNDED
//!                      │                         └─ purged ─▶ REJECTING ─ void ─▶ REJECTED
//!                      └─ cancelled ─▶ CANCEL_REQUESTED ─ (the placement) void / refund ─▶ CANCELLED / REFUNDED
//! ```
//!
//! The money rules it keeps:
//!
//! - A cancellation is recorded at once, whatever the payment is doing, and
//!   never waits on it. While the placement is still being handled
//!   (CANCEL_REQUESTED) the placement finishes the job when its answer
//!   comes: an approval is refunded, a decline needs nothing, and a failure
//!   is settled by a void. Once the placement has settled or been given up,
//!   the cancellation does the job itself.
//! - "Nothing was charged" is never assumed from a failure: it is what the
//!   provider says when asked to void (which also makes sure the key can
//!   never charge later) — or a decline.
//! - Only a placement's own failures make a record DEAD_LETTERED; a
//!   cancellation that is given up still records the cancellation.
//! - A purge settles the order: a given-up placement is voided and
//!   rejected, a due refund or void is made first; the purge is refused
//!   (by the caller) when the provider cannot be reached. The purge records
//!   its intent (REJECTING) before it voids, so an approval that a copy of
//!   the placement still receives is voided too, never confirmed.
//!
//! Every input may come again (redelivery, a redriven copy) and in any
//! order; [`next`] is checked over every interleaving by the model in
//! `model.rs` (tests), together with [`crate::order`].

/// Where the processor is with an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// No record: nothing about the order was recorded yet.
    New,
    /// The placement is being handled and an attempt failed; whether the
    /// provider charged is not known yet.
    Authorizing,
    /// The placement's attempts are spent: it waits in the dead-letter
    /// stream for an operator; whether the provider charged is not known.
    DeadLettered,
    /// Cancelled while the placement was being handled: the placement voids
    /// (or refunds) when it comes back.
    CancelRequested,
    /// Cancelled after the placement was given up: the payment must be
    /// voided (the cancellation does it).
    VoidDue,
    /// An operator purged the given-up placement: the payment is voided,
    /// then the order is rejected.
    Rejecting,
    /// Authorized; `OrderConfirmed` emitted.
    Confirmed,
    /// Charged but cancelled: the payment must be refunded.
    RefundDue,
    /// Declined (or given up and purged, nothing left charged);
    /// `OrderRejected` emitted.
    Rejected,
    /// Cancelled with nothing charged (a decline, or a void that found nothing).
    Cancelled,
    /// Cancelled and refunded once; `OrderRefunded` emitted.
    Refunded,
}

impl Stage {
    pub const ALL: [Self; 11] = [
        Self::New,
        Self::Authorizing,
        Self::DeadLettered,
        Self::CancelRequested,
        Self::VoidDue,
        Self::Rejecting,
        Self::Confirmed,
        Self::RefundDue,
        Self::Rejected,
        Self::Cancelled,
        Self::Refunded,
    ];

    /// The name stored in `order_processing.state` (the first names predate
    /// the state machine and are kept).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Authorizing => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::CancelRequested => "cancel_requested",
            Self::VoidDue => "void_due",
            Self::Rejecting => "rejecting",
            Self::Confirmed => "confirmed",
            Self::RefundDue => "refund_due",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    /// Parses [`Stage::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.as_str() == raw)
    }

    /// Nothing more will happen to the order's money.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Cancelled | Self::Refunded)
    }

    /// The placement is still to be answered: an approval charges now.
    fn awaits_authorization(self) -> bool {
        matches!(self, Self::New | Self::Authorizing | Self::DeadLettered)
    }

    /// Cancelled, with the payment's outcome still unknown.
    fn awaits_void(self) -> bool {
        matches!(self, Self::CancelRequested | Self::VoidDue)
    }

    /// A void must settle it before anything else.
    fn voids(self) -> bool {
        self.awaits_void() || self == Self::Rejecting
    }
}

/// The processor's record of one order, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub stage: Stage,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    /// Why the order is where it is (status_reason).
    pub reason: String,
}

impl Record {
    /// The record of an order the processor has not heard of.
    pub fn new() -> Self {
        Self {
            stage: Stage::New,
            payment_id: None,
            refund_id: None,
            reason: String::new(),
        }
    }

    fn at(&self, stage: Stage, reason: impl Into<String>) -> Self {
        Self {
            stage,
            reason: reason.into(),
            ..self.clone()
        }
    }
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}

/// Which message an input came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Placement,
    Cancellation,
}

/// What the provider said.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The authorization went through: the order is charged.
    Approved {
        payment_id: String,
    },
    Declined {
        reason: String,
    },
    /// The key's payment is voided: nothing stays charged.
    Voided(Voided),
    /// The refund is made (or was, under the same key).
    Refunded {
        refund_id: String,
    },
}

/// What a void found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Voided {
    /// Nothing was charged (never authorized, or declined).
    NothingCharged,
    /// It had been charged and is refunded now.
    Refunded {
        payment_id: String,
        refund_id: String,
    },
}

/// One thing that happens to an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A delivery of its placement not handled before (first, redelivered
    /// or redriven).
    Placed,
    /// A delivery of its cancellation not handled before.
    Cancelled,
    /// The provider's answer to the call this message made.
    Answer(Answer),
    /// An attempt of a message of this kind failed (it will be retried),
    /// for `reason`.
    Failed { kind: Kind, reason: String },
    /// A message of this kind was given up and dead-lettered, for `reason`.
    GaveUp { kind: Kind, reason: String },
    /// An operator purges a dead letter about the order, for `reason`;
    /// `answer` is the provider's answer to the call the purge made first.
    Purge {
        reason: String,
        answer: Option<Answer>,
    },
}

/// A call to the payment provider, under the order's idempotency keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    Authorize,
    /// Refund, or void an authorization whose outcome is unknown (also
    /// closing the key, so it can never charge later).
    Void,
    Refund {
        payment_id: String,
    },
}

/// A verdict to announce on `orders.*` through the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Confirmed {
        payment_id: String,
    },
    Rejected {
        reason: String,
    },
    Refunded {
        payment_id: String,
        refund_id: String,
    },
}

/// What was done with the input, for the inbox and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    Applied(String),
    Ignored(String),
}

/// What to do after the record is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Then {
    /// Call the provider, then feed its answer back (as [`Input::Answer`],
    /// or to the purge as its `answer`). The record, if it changed, is
    /// written before the call.
    Call(Call),
    /// Done: write the record (with the message's inbox row, and the
    /// verdict into the outbox) and ack.
    Settle {
        verdict: Option<Verdict>,
        outcome: Outcome,
    },
}

/// The new record and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    pub record: Record,
    pub then: Then,
}

impl Step {
    fn call(record: Record, call: Call) -> Self {
        Self {
            record,
            then: Then::Call(call),
        }
    }

    fn applied(record: Record, verdict: Option<Verdict>, what: impl Into<String>) -> Self {
        Self {
            record,
            then: Then::Settle {
                verdict,
                outcome: Outcome::Applied(what.into()),
            },
        }
    }

    fn ignored(record: &Record, why: impl Into<String>) -> Self {
        Self {
            record: record.clone(),
            then: Then::Settle {
                verdict: None,
                outcome: Outcome::Ignored(why.into()),
            },
        }
    }
}

/// The one decision: what `input` does to the order in `record`.
pub fn next(record: &Record, input: &Input) -> Step {
    match input {
        Input::Placed => placed(record),
        Input::Cancelled => cancelled(record),
        Input::Answer(answer) => answered(record, answer),
        Input::Failed { kind, reason } => failed(record, *kind, reason),
        Input::GaveUp { kind, reason } => gave_up(record, *kind, reason),
        Input::Purge {
            reason,
            answer: None,
        } => purge(record, reason),
        Input::Purge {
            answer: Some(answer),
            ..
        } => purge_answered(record, answer),
    }
}

fn placed(record: &Record) -> Step {
    match record.stage {
        stage if stage.awaits_authorization() => Step::call(record.clone(), Call::Authorize),
        stage if stage.voids() => Step::call(record.clone(), Call::Void),
        Stage::RefundDue => refund(record),
        stage => Step::ignored(record, format!("order already {}", stage.as_str())),
    }
}

fn cancelled(record: &Record) -> Step {
    match record.stage {
        Stage::New | Stage::Authorizing => Step::applied(
            record.at(
                Stage::CancelRequested,
                "cancelled while its payment is open; the placement voids or refunds it",
            ),
            None,
            "cancellation recorded; the placement settles the payment",
        ),
        Stage::DeadLettered | Stage::VoidDue | Stage::Rejecting => Step::call(
            record.at(
                Stage::VoidDue,
                "cancelled after its placement was given up; voiding the payment",
            ),
            Call::Void,
        ),
        Stage::Confirmed | Stage::RefundDue => refund(&record.at(
            Stage::RefundDue,
            "cancelled after its payment was captured; refunding",
        )),
        Stage::Rejected => Step::applied(
            record.at(Stage::Cancelled, "cancelled; the payment had been declined"),
            None,
            "cancelled, nothing charged",
        ),
        stage @ (Stage::CancelRequested | Stage::Cancelled | Stage::Refunded) => {
            Step::ignored(record, format!("order already {}", stage.as_str()))
        }
    }
}

fn refund(record: &Record) -> Step {
    match &record.payment_id {
        Some(payment_id) => Step::call(
            record.clone(),
            Call::Refund {
                payment_id: payment_id.clone(),
            },
        ),
        // A refund due without a payment cannot be made by refunding: ask the
        // provider to void whatever the key charged.
        None => Step::call(record.clone(), Call::Void),
    }
}

fn answered(record: &Record, answer: &Answer) -> Step {
    match (record.stage, answer) {
        (stage, Answer::Approved { payment_id }) if stage.awaits_authorization() => {
            let mut confirmed = record.at(Stage::Confirmed, "");
            confirmed.payment_id = Some(payment_id.clone());
            Step::applied(
                confirmed,
                Some(Verdict::Confirmed {
                    payment_id: payment_id.clone(),
                }),
                format!("confirmed, payment {payment_id}"),
            )
        }
        (stage, Answer::Declined { reason }) if stage.awaits_authorization() => Step::applied(
            record.at(Stage::Rejected, reason.clone()),
            Some(Verdict::Rejected {
                reason: reason.clone(),
            }),
            format!("rejected: {reason}"),
        ),
        (stage, Answer::Approved { payment_id }) if stage.awaits_void() => {
            let mut due = record.at(
                Stage::RefundDue,
                "cancelled while its payment was authorized; refunding",
            );
            due.payment_id = Some(payment_id.clone());
            refund(&due)
        }
        (stage, Answer::Declined { .. } | Answer::Voided(Voided::NothingCharged))
            if stage.awaits_void() =>
        {
            Step::applied(
                record.at(Stage::Cancelled, "cancelled; nothing was charged"),
                None,
                "cancelled, nothing charged",
            )
        }
        (Stage::Rejecting, Answer::Approved { .. }) => Step::call(record.clone(), Call::Void),
        (Stage::Rejecting, Answer::Declined { .. } | Answer::Voided(_)) => {
            rejected_by_purge(record, answer)
        }
        (Stage::RefundDue, Answer::Voided(Voided::NothingCharged)) => Step::applied(
            record.at(Stage::Cancelled, "cancelled; nothing was charged"),
            None,
            "cancelled, nothing charged",
        ),
        (
            Stage::CancelRequested | Stage::VoidDue | Stage::RefundDue,
            Answer::Voided(Voided::Refunded {
                payment_id,
                refund_id,
            }),
        ) => refunded(record, payment_id, refund_id),
        (Stage::RefundDue, Answer::Refunded { refund_id }) => {
            let payment_id = record.payment_id.clone().unwrap_or_default();
            refunded(record, &payment_id, refund_id)
        }
        (Stage::RefundDue, Answer::Approved { .. }) => refund(record),
        (stage, answer) => Step::ignored(
            record,
            format!(
                "order already {}; {} changes nothing",
                stage.as_str(),
                answer_name(answer)
            ),
        ),
    }
}

fn refunded(record: &Record, payment_id: &str, refund_id: &str) -> Step {
    let mut done = record.at(Stage::Refunded, "cancelled; payment refunded");
    done.payment_id = Some(payment_id.to_owned());
    done.refund_id = Some(refund_id.to_owned());
    Step::applied(
        done,
        Some(Verdict::Refunded {
            payment_id: payment_id.to_owned(),
            refund_id: refund_id.to_owned(),
        }),
        format!("refunded, refund {refund_id}"),
    )
}

fn answer_name(answer: &Answer) -> &'static str {
    match answer {
        Answer::Approved { .. } => "an approval",
        Answer::Declined { .. } => "a decline",
        Answer::Voided(_) => "a void",
        Answer::Refunded { .. } => "a refund",
    }
}

fn failed(record: &Record, kind: Kind, reason: &str) -> Step {
    let stage = match (kind, record.stage) {
        (Kind::Placement, Stage::New | Stage::DeadLettered) => Stage::Authorizing,
        (_, stage) => stage,
    };
    Step::ignored(&record.at(stage, reason), "attempt failed")
}

fn gave_up(record: &Record, kind: Kind, reason: &str) -> Step {
    let why = format!("dead-lettered: {reason}");
    let record = match (kind, record.stage) {
        (Kind::Placement, Stage::New | Stage::Authorizing) => record.at(Stage::DeadLettered, why),
        (Kind::Placement, Stage::CancelRequested) => record.at(
            Stage::VoidDue,
            format!("cancelled; its placement was {why} before the payment was voided"),
        ),
        // A cancellation given up is still a cancellation: record it as
        // the cancellation itself would have.
        (Kind::Cancellation, _) => {
            let cancelled = cancelled(record).record;
            if cancelled.stage == record.stage {
                record.at(record.stage, why)
            } else {
                cancelled
            }
        }
        (Kind::Placement, stage) => record.at(stage, why),
    };
    Step::ignored(&record, "given up")
}

fn purge(record: &Record, reason: &str) -> Step {
    match record.stage {
        Stage::DeadLettered | Stage::Rejecting => Step::call(
            record.at(Stage::Rejecting, format!("purged by an operator: {reason}")),
            Call::Void,
        ),
        Stage::VoidDue => Step::call(record.clone(), Call::Void),
        Stage::RefundDue => refund(record),
        stage => Step::ignored(
            record,
            format!(
                "order {}; purged ({reason}) with nothing to settle",
                stage.as_str()
            ),
        ),
    }
}

/// A purge's call answered: the same as any answer (a purge that found
/// the record elsewhere settles what it found).
fn purge_answered(record: &Record, answer: &Answer) -> Step {
    answered(record, answer)
}

/// The void a purge asked for is done: the order is rejected, nothing charged.
fn rejected_by_purge(record: &Record, answer: &Answer) -> Step {
    let mut rejected = record.at(Stage::Rejected, record.reason.clone());
    if let Answer::Voided(Voided::Refunded {
        payment_id,
        refund_id,
    }) = answer
    {
        rejected.payment_id = Some(payment_id.clone());
        rejected.refund_id = Some(refund_id.clone());
    }
    Step::applied(
        rejected,
        Some(Verdict::Rejected {
            reason: record.reason.clone(),
        }),
        "rejected after a purge, nothing charged",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stage: Stage) -> Record {
        Record {
            stage,
            payment_id: matches!(stage, Stage::Confirmed | Stage::RefundDue | Stage::Refunded)
                .then(|| "p-1".to_owned()),
            ..Record::new()
        }
    }

    fn approved() -> Input {
        Input::Answer(Answer::Approved {
            payment_id: "p-1".into(),
        })
    }

    fn gave_up_input(kind: Kind) -> Input {
        Input::GaveUp {
            kind,
            reason: "5 attempts failed".into(),
        }
    }

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
        assert_eq!(Stage::parse("pending"), None);
    }

    #[test]
    fn a_placement_is_authorized_then_confirmed_with_its_verdict() {
        let step = next(&Record::new(), &Input::Placed);
        assert_eq!(step.then, Then::Call(Call::Authorize));
        assert_eq!(step.record.stage, Stage::New);
        let step = next(&step.record, &approved());
        assert_eq!(step.record.stage, Stage::Confirmed);
        assert_eq!(step.record.payment_id.as_deref(), Some("p-1"));
        assert!(matches!(
            step.then,
            Then::Settle {
                verdict: Some(Verdict::Confirmed { .. }),
                ..
            }
        ));
    }

    #[test]
    fn a_cancellation_never_waits_for_the_payment() {
        for stage in [Stage::New, Stage::Authorizing] {
            let step = next(&at(stage), &Input::Cancelled);
            assert_eq!(step.record.stage, Stage::CancelRequested, "{stage:?}");
            assert!(matches!(step.then, Then::Settle { verdict: None, .. }));
        }
    }

    #[test]
    fn an_approval_after_a_cancellation_is_refunded_and_a_failure_voided() {
        let step = next(&at(Stage::CancelRequested), &approved());
        assert_eq!(step.record.stage, Stage::RefundDue);
        assert_eq!(
            step.then,
            Then::Call(Call::Refund {
                payment_id: "p-1".into()
            })
        );
        let step = next(&at(Stage::CancelRequested), &Input::Placed);
        assert_eq!(step.then, Then::Call(Call::Void));
        let step = next(
            &at(Stage::CancelRequested),
            &Input::Answer(Answer::Voided(Voided::NothingCharged)),
        );
        assert_eq!(step.record.stage, Stage::Cancelled);
    }

    #[test]
    fn nothing_is_assumed_about_a_given_up_placement() {
        let step = next(&at(Stage::DeadLettered), &Input::Cancelled);
        assert_eq!(step.record.stage, Stage::VoidDue);
        assert_eq!(step.then, Then::Call(Call::Void));
        let step = next(
            &at(Stage::DeadLettered),
            &Input::Purge {
                reason: "stale".into(),
                answer: None,
            },
        );
        assert_eq!(step.then, Then::Call(Call::Void));
    }

    #[test]
    fn only_a_placement_makes_a_record_dead_lettered() {
        assert_eq!(
            next(&at(Stage::Authorizing), &gave_up_input(Kind::Placement))
                .record
                .stage,
            Stage::DeadLettered
        );
        assert_eq!(
            next(&at(Stage::Authorizing), &gave_up_input(Kind::Cancellation))
                .record
                .stage,
            Stage::CancelRequested
        );
        assert_eq!(
            next(&at(Stage::Confirmed), &gave_up_input(Kind::Cancellation))
                .record
                .stage,
            Stage::RefundDue
        );
    }

    #[test]
    fn a_purged_placement_is_rejected_after_a_void() {
        let step = next(
            &at(Stage::DeadLettered),
            &Input::Purge {
                reason: "customer gone".into(),
                answer: None,
            },
        );
        assert_eq!(step.record.stage, Stage::Rejecting);
        assert_eq!(step.then, Then::Call(Call::Void));
        let late = next(&step.record, &approved());
        assert_eq!(
            late.then,
            Then::Call(Call::Void),
            "an approval is voided too"
        );
        let step = next(
            &step.record,
            &Input::Purge {
                reason: "customer gone".into(),
                answer: Some(Answer::Voided(Voided::NothingCharged)),
            },
        );
        assert_eq!(step.record.stage, Stage::Rejected);
        let Then::Settle {
            verdict: Some(Verdict::Rejected { reason }),
            ..
        } = step.then
        else {
            panic!("a purge announces the rejection");
        };
        assert!(reason.contains("customer gone"), "{reason}");
    }

    #[test]
    fn final_stages_ignore_everything_but_their_cancellation() {
        for stage in [Stage::Rejected, Stage::Cancelled, Stage::Refunded] {
            for input in [
                Input::Placed,
                approved(),
                Input::Answer(Answer::Declined { reason: "x".into() }),
            ] {
                let step = next(&at(stage), &input);
                assert_eq!(step.record.stage, stage, "{stage:?} {input:?}");
                assert!(matches!(step.then, Then::Settle { verdict: None, .. }));
            }
        }
    }
}
