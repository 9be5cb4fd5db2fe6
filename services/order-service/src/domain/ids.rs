//! Identifiers: order ids, idempotency keys and correlation ids.

use uuid::Uuid;

/// An order's id: a UUID, version 7 when Ordo assigns it (time ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses any UUID in its hyphenated, simple or URN form.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Uuid::parse_str(raw.trim()).map(Self).map_err(|_| {
            format!(
                "must be a UUID, got {:?}",
                ordo_telemetry::safe_text(raw, 64)
            )
        })
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's PlaceOrder idempotency key: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;

    /// `None` for an empty key (no idempotency), else the checked key.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !raw.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".to_owned());
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id that ties together every log line, span and event of one request's
/// consequences: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub const MAX_LEN: usize = ordo_telemetry::CORRELATION_ID_MAX_LEN;

    /// A fresh random id for a request that brought none.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    /// Checks the rule every Ordo process applies ([`ordo_telemetry::correlation_id_rule`]).
    pub fn parse(raw: &str) -> Result<Self, String> {
        ordo_telemetry::correlation_id_rule(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Trusts a value read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_order_id_is_echoed_bounded() {
        let huge = "z".repeat(4 << 20);
        let why = OrderId::parse(&huge).unwrap_err();
        assert!(why.len() < 256, "{} bytes", why.len());
        assert!(why.contains("zzzz"), "{why}");
        let shown = OrderId::parse("a\nb").unwrap_err();
        assert!(!shown.contains('\n'), "{shown}");
    }
}
