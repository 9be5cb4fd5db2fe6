//! NATS message → what the processor must do: decode by the subject's last
//! token and the protobuf payload, checking what the payment call needs.
//!
//! Every field that travels on — into headers, metric labels, log lines,
//! error texts — is checked here, where it enters: an order id must be a
//! UUID, a currency three upper-case letters, and a correlation id that
//! breaks the correlation id rule is dropped (the order is still handled;
//! only the link to its request is lost), never carried on.

use ordo_lifecycle::payment::Kind;
use ordo_proto::events::v1 as events;
use prost::Message as _;
use uuid::Uuid;

/// An order to charge: from `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub correlation_id: String,
}

/// An order to stop (and refund, if charged): from `OrderCancelled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledOrder {
    pub order_id: Uuid,
    pub correlation_id: String,
}

/// A message the processor acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Placed(PlacedOrder),
    Cancelled(CancelledOrder),
}

impl Incoming {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Placed(_) => Kind::Placement,
            Self::Cancelled(_) => Kind::Cancellation,
        }
    }

    /// The placement, for a placement message (an authorization needs it).
    pub fn placed(&self) -> Option<&PlacedOrder> {
        match self {
            Self::Placed(placed) => Some(placed),
            Self::Cancelled(_) => None,
        }
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Placed(placed) => placed.order_id,
            Self::Cancelled(cancelled) => cancelled.order_id,
        }
    }

    pub fn correlation_id(&self) -> &str {
        match self {
            Self::Placed(placed) => &placed.correlation_id,
            Self::Cancelled(cancelled) => &cancelled.correlation_id,
        }
    }
}

/// Decodes a message, or says why it cannot be used (it then goes to the
/// dead-letter stream at once: no retry can fix it).
pub fn decode(subject: &str, payload: &[u8]) -> Result<Incoming, String> {
    match subject.rsplit('.').next().unwrap_or_default() {
        "placed" => {
            let event = events::OrderPlaced::decode(payload)
                .map_err(|err| format!("not an OrderPlaced: {err}"))?;
            if event.total_minor < 0 {
                return Err(format!("total_minor {} is negative", event.total_minor));
            }
            if event.currency.len() != 3 || !event.currency.bytes().all(|b| b.is_ascii_uppercase())
            {
                return Err(format!(
                    "currency {:?} is not a 3-letter code",
                    shown(&event.currency)
                ));
            }
            Ok(Incoming::Placed(PlacedOrder {
                order_id: order_id(&event.order_id)?,
                amount_minor: event.total_minor,
                currency: event.currency,
                correlation_id: correlation_id(event.correlation_id),
            }))
        }
        "cancelled" => {
            let event = events::OrderCancelled::decode(payload)
                .map_err(|err| format!("not an OrderCancelled: {err}"))?;
            Ok(Incoming::Cancelled(CancelledOrder {
                order_id: order_id(&event.order_id)?,
                correlation_id: correlation_id(event.correlation_id),
            }))
        }
        other => Err(format!(
            "the processor does not handle subject kind {:?}",
            shown(other)
        )),
    }
}

fn order_id(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|err| format!("order_id {:?} is not a UUID: {err}", shown(raw)))
}

/// The correlation id if it keeps the rule; empty otherwise.
fn correlation_id(raw: String) -> String {
    if ordo_telemetry::valid_correlation_id(&raw).is_some() {
        raw
    } else {
        String::new()
    }
}

/// At most 64 characters of `raw`, for an error text: input is echoed, but bounded.
pub fn shown(raw: &str) -> String {
    if raw.chars().count() <= 64 {
        raw.to_owned()
    } else {
        format!("{}…", raw.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_placed_and_cancelled() {
        let order_id = Uuid::now_v7();
        let placed = events::OrderPlaced {
            order_id: order_id.to_string(),
            currency: "EUR".into(),
            total_minor: 1250,
            correlation_id: "c-1".into(),
            ..Default::default()
        };
        assert_eq!(
            decode("t1.orders.placed", &placed.encode_to_vec()).unwrap(),
            Incoming::Placed(PlacedOrder {
                order_id,
                amount_minor: 1250,
                currency: "EUR".into(),
                correlation_id: "c-1".into(),
            })
        );
        let cancelled = events::OrderCancelled {
            order_id: order_id.to_string(),
            ..Default::default()
        };
        assert_eq!(
            decode("orders.cancelled", &cancelled.encode_to_vec())
                .unwrap()
                .order_id(),
            order_id
        );
    }

    #[test]
    fn a_correlation_id_that_breaks_the_rule_is_dropped_not_carried_on() {
        let order_id = Uuid::now_v7();
        for bad in [
            "a\r\nNats-Msg-Id: forged",
            "with space",
            &"x".repeat(129),
            "naïve",
        ] {
            let placed = events::OrderPlaced {
                order_id: order_id.to_string(),
                currency: "EUR".into(),
                total_minor: 1,
                correlation_id: bad.into(),
                ..Default::default()
            };
            assert_eq!(
                decode("orders.placed", &placed.encode_to_vec())
                    .unwrap()
                    .correlation_id(),
                "",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn echoed_input_is_bounded() {
        let huge = "z".repeat(4 << 20);
        let placed = events::OrderPlaced {
            order_id: huge.clone(),
            currency: "EUR".into(),
            ..Default::default()
        };
        let why = decode("orders.placed", &placed.encode_to_vec()).unwrap_err();
        assert!(why.len() < 512, "{} bytes", why.len());
        assert!(decode(&format!("orders.{huge}"), b"").unwrap_err().len() < 512);
    }

    #[test]
    fn says_why_a_message_is_unusable() {
        assert!(
            decode("orders.placed", b"\xff\xff\xff")
                .unwrap_err()
                .contains("OrderPlaced")
        );
        let no_id = events::OrderPlaced {
            currency: "EUR".into(),
            ..Default::default()
        };
        assert!(
            decode("orders.placed", &no_id.encode_to_vec())
                .unwrap_err()
                .contains("order_id")
        );
        assert!(
            decode("orders.shipped", b"")
                .unwrap_err()
                .contains("shipped")
        );
    }
}
