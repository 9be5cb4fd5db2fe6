//! A request for a new order, parsed: every rule checked, every violation
//! reported at once.

use sha2::{Digest, Sha256};

use super::{IdempotencyKey, Violations};

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;
/// Most units of one line.
pub const MAX_QUANTITY: u32 = 10_000;
/// Highest unit price, in minor units.
pub const MAX_UNIT_PRICE_MINOR: i64 = 1_000_000_000_000;

/// The customer placing an order: 1-64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if raw.is_empty() || raw.len() > 64 || !raw.chars().all(allowed) {
            return Err("must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'".to_owned());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stock keeping unit: 1-64 characters, none of them control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if !(1..=64).contains(&length) || raw.chars().any(char::is_control) {
            return Err("must be 1-64 characters with no control characters".to_owned());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err("must be three upper-case letters (ISO 4217), e.g. EUR".to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters get in.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

/// A cancellation reason: at most 512 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReason(String);

impl CancelReason {
    pub const MAX_CHARS: usize = 512;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A PlaceOrder request as received, before any check.
#[derive(Debug, Clone, Default)]
pub struct NewOrderDraft {
    pub customer_id: String,
    pub lines: Vec<LineDraft>,
    pub currency: String,
    pub idempotency_key: String,
}

/// One requested line, before any check.
#[derive(Debug, Clone, Default)]
pub struct LineDraft {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
}

/// A checked request for a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: CustomerId,
    pub lines: Vec<NewLine>,
    pub currency: Currency,
    pub total_minor: i64,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// A checked line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price_minor: i64,
}

impl NewOrder {
    /// Checks every rule and reports every violation, with its field path.
    pub fn parse(draft: &NewOrderDraft) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let customer_id = violations.check("customer_id", CustomerId::parse(&draft.customer_id));
        let currency = violations.check("currency", Currency::parse(&draft.currency));
        let idempotency_key = violations.check(
            "idempotency_key",
            IdempotencyKey::parse_optional(&draft.idempotency_key),
        );
        if draft.lines.is_empty() || draft.lines.len() > MAX_LINES {
            violations.add("lines", format!("must hold 1-{MAX_LINES} lines"));
        }
        let lines: Vec<Option<NewLine>> = draft
            .lines
            .iter()
            .take(MAX_LINES)
            .enumerate()
            .map(|(index, line)| parse_line(index, line, &mut violations))
            .collect();
        let lines: Option<Vec<NewLine>> = lines.into_iter().collect();
        let total_minor = lines.as_deref().and_then(|lines| {
            let total = total_of(lines);
            if total.is_none() {
                violations.add("lines", "order total overflows a 64-bit amount");
            }
            total
        });

        violations.into_result(|| {
            Some(Self {
                customer_id: customer_id?,
                lines: lines?,
                currency: currency?,
                total_minor: total_minor?,
                idempotency_key: idempotency_key?,
            })
        })
    }

    /// A digest of everything the order is made of except the idempotency
    /// key: two requests with one key must agree on it.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(self.customer_id.as_str());
        hasher.update([0]);
        hasher.update(self.currency.as_str());
        for line in &self.lines {
            hasher.update([0]);
            hasher.update(line.sku.as_str());
            hasher.update([0]);
            hasher.update(line.quantity.to_be_bytes());
            hasher.update(line.unit_price_minor.to_be_bytes());
        }
        hasher.finalize().to_vec()
    }
}

fn parse_line(index: usize, line: &LineDraft, violations: &mut Violations) -> Option<NewLine> {
    let field = |name: &str| format!("lines[{index}].{name}");
    let sku = violations.check(field("sku"), Sku::parse(&line.sku));
    if !(1..=MAX_QUANTITY).contains(&line.quantity) {
        violations.add(field("quantity"), format!("must be 1-{MAX_QUANTITY}"));
    }
    if !(0..=MAX_UNIT_PRICE_MINOR).contains(&line.unit_price_minor) {
        violations.add(
            field("unit_price_minor"),
            format!("must be 0-{MAX_UNIT_PRICE_MINOR} minor units"),
        );
    }
    let valid_numbers = (1..=MAX_QUANTITY).contains(&line.quantity)
        && (0..=MAX_UNIT_PRICE_MINOR).contains(&line.unit_price_minor);
    Some(NewLine {
        sku: sku?,
        quantity: line.quantity,
        unit_price_minor: line.unit_price_minor,
    })
    .filter(|_| valid_numbers)
}

/// Sum of quantity × unit price, or `None` on overflow.
pub(crate) fn total_of(lines: &[NewLine]) -> Option<i64> {
    lines.iter().try_fold(0_i64, |total, line| {
        line.unit_price_minor
            .checked_mul(i64::from(line.quantity))
            .and_then(|amount| total.checked_add(amount))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32, unit_price_minor: i64) -> LineDraft {
        LineDraft {
            sku: sku.to_owned(),
            quantity,
            unit_price_minor,
        }
    }

    #[test]
    fn total_overflow_is_caught() {
        let huge = NewLine {
            sku: Sku("x".into()),
            quantity: 2,
            unit_price_minor: i64::MAX / 2 + 1,
        };
        assert_eq!(total_of(&[huge]), None);
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let draft = NewOrderDraft {
            customer_id: "bad id!".into(),
            lines: vec![line("ok", 1, 5), line("", 0, -1)],
            currency: "eur".into(),
            idempotency_key: String::new(),
        };
        let violations = NewOrder::parse(&draft).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "currency",
                "lines[1].sku",
                "lines[1].quantity",
                "lines[1].unit_price_minor"
            ]
        );
    }

    #[test]
    fn fingerprint_ignores_only_the_key() {
        let mut draft = NewOrderDraft {
            customer_id: "c-1".into(),
            lines: vec![line("sku-1", 2, 150)],
            currency: "EUR".into(),
            idempotency_key: "k1".into(),
        };
        let first = NewOrder::parse(&draft).unwrap();
        draft.idempotency_key = "k2".into();
        let same = NewOrder::parse(&draft).unwrap();
        draft.lines[0].quantity = 3;
        let other = NewOrder::parse(&draft).unwrap();
        assert_eq!(first.fingerprint(), same.fingerprint());
        assert_ne!(first.fingerprint(), other.fingerprint());
        assert_eq!(other.total_minor, 450);
    }
}
