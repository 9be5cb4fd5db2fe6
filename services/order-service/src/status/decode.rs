//! NATS message → domain: which order, and what happened to it.

use ordo_proto::events::v1 as events;
use prost::Message as _;

use crate::domain::OrderId;
pub use crate::domain::lifecycle::StatusChange;

/// A verdict about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub order_id: OrderId,
    pub change: StatusChange,
}

/// Decodes a message by its subject's last token and its protobuf payload.
pub fn decode(subject: &str, payload: &[u8]) -> Result<StatusEvent, String> {
    let kind = subject.rsplit('.').next().unwrap_or_default();
    let (order_id, change) = match kind {
        "confirmed" => {
            let event = events::OrderConfirmed::decode(payload).map_err(|err| err.to_string())?;
            (
                event.order_id,
                StatusChange::Confirmed {
                    payment_id: ordo_telemetry::safe_text(&event.payment_id, 256),
                },
            )
        }
        "rejected" => {
            let event = events::OrderRejected::decode(payload).map_err(|err| err.to_string())?;
            let reason = ordo_telemetry::safe_text(&event.reason, 512);
            (event.order_id, StatusChange::Rejected { reason })
        }
        "refunded" => {
            let event = events::OrderRefunded::decode(payload).map_err(|err| err.to_string())?;
            (
                event.order_id,
                StatusChange::Refunded {
                    payment_id: ordo_telemetry::safe_text(&event.payment_id, 256),
                },
            )
        }
        other => {
            return Err(format!(
                "no status change on subject kind {:?}",
                ordo_telemetry::safe_text(other, 64)
            ));
        }
    };
    let order_id = OrderId::parse(&order_id)
        .map_err(|err| format!("order_id {}", ordo_telemetry::safe_text(&err, 128)))?;
    Ok(StatusEvent { order_id, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_by_subject() {
        let order_id = uuid::Uuid::now_v7().to_string();
        let payload = events::OrderRejected {
            order_id: order_id.clone(),
            reason: "declined".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let event = decode("t1.orders.rejected", &payload).unwrap();
        assert_eq!(event.order_id.to_string(), order_id);
        assert_eq!(
            event.change,
            StatusChange::Rejected {
                reason: "declined".into()
            }
        );
        assert!(decode("orders.confirmed", b"\xff\xff").is_err());
        assert!(decode("orders.placed", &payload).is_err());
        let no_id = events::OrderConfirmed::default().encode_to_vec();
        assert!(
            decode("orders.confirmed", &no_id)
                .unwrap_err()
                .contains("order_id")
        );
    }
}
