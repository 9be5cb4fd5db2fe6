//! Payments, refunds, idempotency keys and per-order counts, in memory.
//!
//! Every operation takes the one lock for its whole effect, so concurrent
//! calls with one key see exactly one effect. Counts record effects only:
//! a replayed key changes nothing and counts nothing.
//!
//! An authorization key ends in one of four ways: never used, approved
//! (then perhaps refunded), declined, or voided — closed by [`Ledger::void`]
//! before anything was authorized, after which an authorization under it is
//! declined with [`DECLINE_VOIDED`]. A void is how a caller that lost an
//! answer makes sure, whatever happened, that nothing stays charged.
//!
//! Nothing is kept for ever: [`Ledger::forget_before`] drops every entry
//! last touched before a moment (`PAYMENTS_LEDGER_RETENTION`), as a
//! provider's idempotency keys expire.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why the reason field says so.
pub const DECLINE_AMOUNT_ABOVE_LIMIT: &str = "amount_above_limit";
/// The decline of an authorization under a key a void closed first.
pub const DECLINE_VOIDED: &str = "voided";

/// An authorization request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
}

impl Charge {
    fn fingerprint(&self) -> Vec<u8> {
        Sha256::new()
            .chain_update(&self.order_id)
            .chain_update([0])
            .chain_update(self.amount_minor.to_be_bytes())
            .chain_update(&self.currency)
            .finalize()
            .to_vec()
    }
}

/// The decision on a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub payment_id: Uuid,
    pub approved: bool,
    pub decline_reason: String,
}

/// A refund made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    pub refund_id: Uuid,
    pub payment_id: Uuid,
}

/// How often an order was charged and refunded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub authorizations: u32,
    pub approvals: u32,
    pub refunds: u32,
}

/// What a void found, and so what stays charged: nothing, in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voided {
    /// The key was never used; it is closed now.
    NeverAuthorized,
    /// The authorization was declined.
    Declined { payment_id: Uuid },
    /// The payment was approved and is refunded (now or before).
    Refunded(Refund),
}

/// What an authorization key led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    None,
    Approved { payment_id: Uuid },
    Declined { payment_id: Uuid },
    Refunded(Refund),
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("idempotency key already used for a different request")]
    KeyReused,
    #[error("no payment {0}")]
    UnknownPayment(Uuid),
    #[error("payment {0} was declined; there is nothing to refund")]
    NotApproved(Uuid),
    #[error("payment {0} was already refunded")]
    AlreadyRefunded(Uuid),
}

#[derive(Debug)]
struct Payment {
    order_id: String,
    approved: bool,
    refund: Option<Uuid>,
    touched: Instant,
}

/// What an authorization key holds.
#[derive(Debug, Clone)]
enum KeyUse {
    /// The first request's fingerprint and the decision made on it.
    Decided(Vec<u8>, Authorization),
    /// Closed by a void before any authorization.
    Voided(Authorization),
}

/// A value and when it was last touched.
#[derive(Debug, Clone)]
struct Kept<T> {
    value: T,
    touched: Instant,
}

impl<T> Kept<T> {
    fn now(value: T) -> Self {
        Self {
            value,
            touched: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    payments: HashMap<Uuid, Payment>,
    authorize_keys: HashMap<String, Kept<KeyUse>>,
    refund_keys: HashMap<String, Kept<(Uuid, Refund)>>,
    counts: HashMap<String, Kept<Counts>>,
}

impl State {
    /// Refunds an approved payment once under `key`, or replays that refund.
    fn refund(&mut self, payment_id: Uuid, key: &str) -> Result<Refund, LedgerError> {
        if let Some(Kept {
            value: (first, refund),
            ..
        }) = self.refund_keys.get(key)
        {
            return if *first == payment_id {
                Ok(*refund)
            } else {
                Err(LedgerError::KeyReused)
            };
        }
        let payment = self
            .payments
            .get_mut(&payment_id)
            .ok_or(LedgerError::UnknownPayment(payment_id))?;
        if !payment.approved {
            return Err(LedgerError::NotApproved(payment_id));
        }
        if payment.refund.is_some() {
            return Err(LedgerError::AlreadyRefunded(payment_id));
        }
        let refund = Refund {
            refund_id: Uuid::new_v4(),
            payment_id,
        };
        payment.refund = Some(refund.refund_id);
        payment.touched = Instant::now();
        let order_id = payment.order_id.clone();
        self.count(order_id).refunds += 1;
        self.refund_keys
            .insert(key.to_owned(), Kept::now((payment_id, refund)));
        Ok(refund)
    }

    /// The order's counts, touched now.
    fn count(&mut self, order_id: String) -> &mut Counts {
        let kept = self
            .counts
            .entry(order_id)
            .or_insert_with(|| Kept::now(Counts::default()));
        kept.touched = Instant::now();
        &mut kept.value
    }
}

/// The simulator's books.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<State>);

impl Ledger {
    /// Decides `charge` (approved unless above `decline_above_minor`), or
    /// returns the first decision made under `key`.
    pub fn authorize(
        &self,
        charge: Charge,
        key: &str,
        decline_above_minor: i64,
    ) -> Result<Authorization, LedgerError> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fingerprint = charge.fingerprint();
        match state.authorize_keys.get(key).map(|kept| &kept.value) {
            Some(KeyUse::Decided(first, decision)) => {
                return if *first == fingerprint {
                    Ok(decision.clone())
                } else {
                    Err(LedgerError::KeyReused)
                };
            }
            Some(KeyUse::Voided(decision)) => return Ok(decision.clone()),
            None => {}
        }
        let approved = charge.amount_minor <= decline_above_minor;
        let decision = Authorization {
            payment_id: Uuid::new_v4(),
            approved,
            decline_reason: if approved {
                String::new()
            } else {
                DECLINE_AMOUNT_ABOVE_LIMIT.to_owned()
            },
        };
        let counts = state.count(charge.order_id.clone());
        counts.authorizations += 1;
        counts.approvals += u32::from(approved);
        state.payments.insert(
            decision.payment_id,
            Payment {
                order_id: charge.order_id,
                approved,
                refund: None,
                touched: Instant::now(),
            },
        );
        state.authorize_keys.insert(
            key.to_owned(),
            Kept::now(KeyUse::Decided(fingerprint, decision.clone())),
        );
        Ok(decision)
    }

    /// Makes sure nothing stays charged under `authorization_key`: refunds
    /// an approved payment (under `refund_key`), or closes an unused key.
    pub fn void(&self, authorization_key: &str, refund_key: &str) -> Result<Voided, LedgerError> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let decision = match state
            .authorize_keys
            .get(authorization_key)
            .map(|kept| &kept.value)
        {
            None => {
                let closed = Authorization {
                    payment_id: Uuid::new_v4(),
                    approved: false,
                    decline_reason: DECLINE_VOIDED.to_owned(),
                };
                state.authorize_keys.insert(
                    authorization_key.to_owned(),
                    Kept::now(KeyUse::Voided(closed)),
                );
                return Ok(Voided::NeverAuthorized);
            }
            Some(KeyUse::Voided(_)) => return Ok(Voided::NeverAuthorized),
            Some(KeyUse::Decided(_, decision)) => decision.clone(),
        };
        if !decision.approved {
            return Ok(Voided::Declined {
                payment_id: decision.payment_id,
            });
        }
        let already = state
            .payments
            .get(&decision.payment_id)
            .and_then(|payment| payment.refund);
        match already {
            Some(refund_id) => Ok(Voided::Refunded(Refund {
                refund_id,
                payment_id: decision.payment_id,
            })),
            None => state
                .refund(decision.payment_id, refund_key)
                .map(Voided::Refunded),
        }
    }

    /// What `authorization_key` led to.
    pub fn payment(&self, authorization_key: &str) -> PaymentStatus {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match state
            .authorize_keys
            .get(authorization_key)
            .map(|kept| &kept.value)
        {
            None => PaymentStatus::None,
            Some(KeyUse::Voided(_)) => PaymentStatus::Voided,
            Some(KeyUse::Decided(_, decision)) if !decision.approved => PaymentStatus::Declined {
                payment_id: decision.payment_id,
            },
            Some(KeyUse::Decided(_, decision)) => {
                let payment_id = decision.payment_id;
                match state
                    .payments
                    .get(&payment_id)
                    .and_then(|payment| payment.refund)
                {
                    Some(refund_id) => PaymentStatus::Refunded(Refund {
                        refund_id,
                        payment_id,
                    }),
                    None => PaymentStatus::Approved { payment_id },
                }
            }
        }
    }

    /// Refunds an approved payment once, or returns the refund made under `key`.
    pub fn refund(&self, payment_id: Uuid, key: &str) -> Result<Refund, LedgerError> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.refund(payment_id, key)
    }

    /// Effects recorded for `order_id` (zeros when none).
    pub fn counts(&self, order_id: &str) -> Counts {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .counts
            .get(order_id)
            .map(|kept| kept.value)
            .unwrap_or_default()
    }

    /// Forgets every payment, key and count last touched before `horizon`;
    /// how many entries went.
    pub fn forget_before(&self, horizon: Instant) -> usize {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let before = state.payments.len()
            + state.authorize_keys.len()
            + state.refund_keys.len()
            + state.counts.len();
        state
            .payments
            .retain(|_, payment| payment.touched >= horizon);
        state
            .authorize_keys
            .retain(|_, kept| kept.touched >= horizon);
        state.refund_keys.retain(|_, kept| kept.touched >= horizon);
        state.counts.retain(|_, kept| kept.touched >= horizon);
        let after = state.payments.len()
            + state.authorize_keys.len()
            + state.refund_keys.len()
            + state.counts.len();
        before - after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(amount_minor: i64) -> Charge {
        Charge {
            order_id: "o-1".into(),
            amount_minor,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn a_replayed_key_returns_the_first_decision_and_counts_once() {
        let ledger = Ledger::default();
        let first = ledger.authorize(charge(100), "k", 1000).unwrap();
        let again = ledger.authorize(charge(100), "k", 1000).unwrap();
        assert_eq!(first, again);
        assert_eq!(
            ledger.authorize(charge(101), "k", 1000),
            Err(LedgerError::KeyReused)
        );
        assert_eq!(
            ledger.counts("o-1"),
            Counts {
                authorizations: 1,
                approvals: 1,
                refunds: 0
            }
        );
    }

    #[test]
    fn declines_above_the_limit() {
        let ledger = Ledger::default();
        let decision = ledger.authorize(charge(1001), "k", 1000).unwrap();
        assert!(!decision.approved);
        assert_eq!(decision.decline_reason, DECLINE_AMOUNT_ABOVE_LIMIT);
        assert_eq!(
            ledger.refund(decision.payment_id, "r"),
            Err(LedgerError::NotApproved(decision.payment_id))
        );
    }

    #[test]
    fn a_void_refunds_an_approval_once_and_a_later_refund_replays_it() {
        let ledger = Ledger::default();
        let paid = ledger.authorize(charge(100), "k", 1000).unwrap();
        let Voided::Refunded(refund) = ledger.void("k", "r").unwrap() else {
            panic!("an approved payment is refunded by a void");
        };
        assert_eq!(refund.payment_id, paid.payment_id);
        assert_eq!(ledger.void("k", "r").unwrap(), Voided::Refunded(refund));
        assert_eq!(ledger.refund(paid.payment_id, "r").unwrap(), refund);
        assert_eq!(ledger.payment("k"), PaymentStatus::Refunded(refund));
        assert_eq!(ledger.counts("o-1").refunds, 1);
    }

    #[test]
    fn a_void_closes_an_unused_key_so_it_never_charges() {
        let ledger = Ledger::default();
        assert_eq!(ledger.payment("k"), PaymentStatus::None);
        assert_eq!(ledger.void("k", "r").unwrap(), Voided::NeverAuthorized);
        let late = ledger.authorize(charge(100), "k", 1000).unwrap();
        assert!(!late.approved);
        assert_eq!(late.decline_reason, DECLINE_VOIDED);
        assert_eq!(ledger.payment("k"), PaymentStatus::Voided);
        assert_eq!(ledger.void("k", "r").unwrap(), Voided::NeverAuthorized);
        assert_eq!(ledger.counts("o-1"), Counts::default());
    }

    #[test]
    fn a_void_of_a_declined_payment_changes_nothing() {
        let ledger = Ledger::default();
        let declined = ledger.authorize(charge(5000), "k", 1000).unwrap();
        assert_eq!(
            ledger.void("k", "r").unwrap(),
            Voided::Declined {
                payment_id: declined.payment_id
            }
        );
        assert_eq!(ledger.counts("o-1").refunds, 0);
    }

    #[test]
    fn entries_are_forgotten_after_the_retention_and_kept_before() {
        let ledger = Ledger::default();
        let paid = ledger.authorize(charge(100), "k", 1000).unwrap();
        ledger.refund(paid.payment_id, "r").unwrap();
        ledger.void("never-used", "r2").unwrap();
        let long_ago = Instant::now() - std::time::Duration::from_secs(3600);
        assert_eq!(ledger.forget_before(long_ago), 0);
        assert_eq!(ledger.counts("o-1").refunds, 1);
        let forgotten = ledger.forget_before(Instant::now() + std::time::Duration::from_secs(1));
        assert_eq!(
            forgotten, 5,
            "a payment, two keys, a refund key, the counts"
        );
        assert_eq!(ledger.counts("o-1"), Counts::default());
        assert_eq!(ledger.payment("k"), PaymentStatus::None);
    }

    #[test]
    fn refunds_at_most_once() {
        let ledger = Ledger::default();
        let paid = ledger.authorize(charge(100), "k", 1000).unwrap();
        let refund = ledger.refund(paid.payment_id, "r1").unwrap();
        assert_eq!(ledger.refund(paid.payment_id, "r1").unwrap(), refund);
        assert_eq!(
            ledger.refund(paid.payment_id, "r2"),
            Err(LedgerError::AlreadyRefunded(paid.payment_id))
        );
        assert_eq!(ledger.counts("o-1").refunds, 1);
        let unknown = Uuid::new_v4();
        assert_eq!(
            ledger.refund(unknown, "r3"),
            Err(LedgerError::UnknownPayment(unknown))
        );
    }
}
