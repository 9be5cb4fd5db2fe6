//! Listing orders: filters, page size, and the opaque keyset cursor.
//!
//! Pages run newest first over `(created_at, id)`, which is unique, so a
//! cursor names an exact position: orders inserted while a client pages are
//! newer than its cursor and never shift the pages it has yet to read.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{CustomerId, OrderId, OrderStatus, Violations};

/// Orders per page: 1-500, 50 when the client says 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 500;

    pub fn parse(raw: u32) -> Result<Self, String> {
        match raw {
            0 => Ok(Self(Self::DEFAULT)),
            1..=Self::MAX => Ok(Self(raw)),
            _ => Err(format!("must be at most {}", Self::MAX)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// The last order of a page: the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: DateTime<Utc>,
    pub id: OrderId,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_LEN: usize = 1 + 8 + 16 + 8;

impl PageCursor {
    /// Encodes the cursor with the filters it belongs to.
    fn encode(&self, filter_digest: u64) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_uuid().as_bytes());
        bytes.extend_from_slice(&filter_digest.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str, filter_digest: u64) -> Result<Self, String> {
        let malformed = || "is not a page token this service issued".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
        if bytes.len() != CURSOR_LEN || bytes[0] != CURSOR_VERSION {
            return Err(malformed());
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().map_err(|_| malformed())?);
        let id = Uuid::from_slice(&bytes[9..25]).map_err(|_| malformed())?;
        let digest = u64::from_be_bytes(bytes[25..33].try_into().map_err(|_| malformed())?);
        if digest != filter_digest {
            return Err("was issued for different filters".to_owned());
        }
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(malformed)?;
        Ok(Self {
            created_at,
            id: OrderId::from_uuid(id),
        })
    }
}

/// A checked ListOrders request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub customer_id: Option<CustomerId>,
    pub status: Option<OrderStatus>,
    pub page_size: PageSize,
    pub after: Option<PageCursor>,
}

impl ListQuery {
    /// Checks filters, page size and token together.
    pub fn parse(
        customer_id: &str,
        status: Result<Option<OrderStatus>, String>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let customer_id = match customer_id {
            "" => Some(None),
            raw => violations
                .check("customer_id", CustomerId::parse(raw))
                .map(Some),
        };
        let status = violations.check("status", status);
        let page_size = violations.check("page_size", PageSize::parse(page_size));
        let digest = filter_digest(customer_id.clone().flatten().as_ref(), status.flatten());
        let after = match page_token {
            "" => Some(None),
            token => violations
                .check("page_token", PageCursor::decode(token, digest))
                .map(Some),
        };
        violations.into_result(|| {
            Some(Self {
                customer_id: customer_id?,
                status: status?,
                page_size: page_size?,
                after: after?,
            })
        })
    }

    /// The token that continues this listing after `last`.
    pub fn next_page_token(&self, last: PageCursor) -> String {
        last.encode(filter_digest(self.customer_id.as_ref(), self.status))
    }
}

/// A digest of the filters: a token only continues the listing it came from.
fn filter_digest(customer_id: Option<&CustomerId>, status: Option<OrderStatus>) -> u64 {
    let digest = Sha256::new()
        .chain_update(customer_id.map_or("", CustomerId::as_str))
        .chain_update([0xff])
        .chain_update(status.map_or("", OrderStatus::as_str))
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 50);
        assert_eq!(PageSize::parse(500).unwrap().get(), 500);
        assert!(PageSize::parse(501).is_err());
    }

    #[test]
    fn token_round_trips_only_with_its_filters() {
        let query = ListQuery::parse("c-1", Ok(None), 10, "").unwrap();
        let cursor = PageCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: OrderId::generate(),
        };
        let token = query.next_page_token(cursor);
        let next = ListQuery::parse("c-1", Ok(None), 10, &token).unwrap();
        assert_eq!(next.after, Some(cursor));
        let other = ListQuery::parse("c-2", Ok(None), 10, &token).unwrap_err();
        assert_eq!(other.iter().next().unwrap().field, "page_token");
        assert!(ListQuery::parse("", Ok(None), 10, "garbage!").is_err());
    }
}
