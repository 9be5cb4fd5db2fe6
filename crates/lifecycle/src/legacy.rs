//! The processor's logic before the state machine (as of commit f64afd6),
//! written in [`crate::payment`]'s vocabulary so the model checker can run it:
//! a cancellation arriving before the placement settled was deferred (NAKed)
//! until JetStream's delivery cap dead-lettered it; a cancelled dead-lettered
//! placement was assumed to have charged nothing; a lost answer was a
//! permanent failure; a purge only deleted the dead letter. The checker
//! must find what that breaks (see `model.rs`).

use crate::model::{Decision, Logic};
use crate::payment::{Answer, Call, Input, Outcome, Record, Stage, Step, Then, Verdict};

pub(super) struct Legacy;

fn settle(record: Record, verdict: Option<Verdict>) -> Decision {
    Decision::Step(Step {
        record,
        then: Then::Settle {
            verdict,
            outcome: Outcome::Applied(String::new()),
        },
    })
}

fn call(record: Record, call: Call) -> Decision {
    Decision::Step(Step {
        record,
        then: Then::Call(call),
    })
}

fn at(record: &Record, stage: Stage) -> Record {
    Record {
        stage,
        ..record.clone()
    }
}

fn refund_of(record: &Record) -> Call {
    Call::Refund {
        payment_id: record.payment_id.clone().unwrap_or_default(),
    }
}

impl Logic for Legacy {
    fn decide(&self, record: &Record, input: &Input) -> Decision {
        use Stage::{
            Authorizing, Cancelled, Confirmed, DeadLettered, New, RefundDue, Refunded, Rejected,
        };
        let unsettled = matches!(record.stage, New | Authorizing | DeadLettered);
        match input {
            Input::Placed if unsettled => call(record.clone(), Call::Authorize),
            Input::Placed if record.stage == RefundDue => call(record.clone(), refund_of(record)),
            Input::Cancelled => match record.stage {
                New | Authorizing => Decision::Defer,
                Confirmed | RefundDue => call(record.clone(), refund_of(record)),
                Rejected | DeadLettered => settle(at(record, Cancelled), None),
                _ => settle(record.clone(), None),
            },
            Input::Answer(Answer::Approved { payment_id }) => match record.stage {
                _ if unsettled => settle(
                    Record {
                        stage: Confirmed,
                        payment_id: Some(payment_id.clone()),
                        ..record.clone()
                    },
                    Some(Verdict::Confirmed {
                        payment_id: payment_id.clone(),
                    }),
                ),
                Cancelled => {
                    let due = Record {
                        stage: RefundDue,
                        payment_id: Some(payment_id.clone()),
                        ..record.clone()
                    };
                    let refund = refund_of(&due);
                    call(due, refund)
                }
                RefundDue => call(record.clone(), refund_of(record)),
                _ => settle(record.clone(), None),
            },
            Input::Answer(Answer::Declined { reason }) if unsettled => settle(
                at(record, Rejected),
                Some(Verdict::Rejected {
                    reason: reason.clone(),
                }),
            ),
            Input::Answer(Answer::Refunded { refund_id }) => match record.stage {
                Confirmed | RefundDue => settle(
                    Record {
                        stage: Refunded,
                        refund_id: Some(refund_id.clone()),
                        ..record.clone()
                    },
                    Some(Verdict::Refunded {
                        payment_id: record.payment_id.clone().unwrap_or_default(),
                        refund_id: refund_id.clone(),
                    }),
                ),
                Refunded => settle(record.clone(), None),
                _ => Decision::Defer,
            },
            Input::Failed { .. } if record.stage == New => Decision::Step(Step {
                record: at(record, Authorizing),
                then: Then::Call(Call::Authorize),
            }),
            Input::GaveUp { .. } if matches!(record.stage, New | Authorizing) => {
                settle(at(record, DeadLettered), None)
            }
            _ => settle(record.clone(), None),
        }
    }

    fn lost_answer_is_permanent(&self) -> bool {
        true
    }

    fn delivery_cap_decides(&self) -> bool {
        true
    }
}
