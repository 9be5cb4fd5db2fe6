//! Messages no Ordo service wrote, injected on every subject mid-run: bytes
//! that are not protobuf, ids that are not UUIDs, a correlation id with a
//! line break, a `Nats-Msg-Id` of 20 KB, text PostgreSQL cannot store, a
//! message with no id at all. Nothing may stall because of them.
//!
//! Each carries the [`MARKER`] header so the checks can tell them apart,
//! and the orders they invent ("phantoms") are left out of the order checks:
//! they were never placed, so no invariant speaks of them.

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream;
use ordo_proto::events::v1 as events;
use prost::Message as _;

/// The header every poison message carries.
pub const MARKER: &str = "Ordo-Chaos-Poison";

/// Publishes one batch of poison; the phantom order ids it names.
pub async fn inject(
    nats_url: &str,
    security: &ordo_service_kit::nats::NatsSecurity,
    round: usize,
) -> anyhow::Result<Vec<String>> {
    let options = security.apply(async_nats::ConnectOptions::new()).await?;
    let client = ordo_service_kit::nats::connect(nats_url, options)
        .await
        .context("poison: cannot connect to NATS")?;
    let jetstream = jetstream::new(client);
    let phantom = || uuid::Uuid::now_v7().to_string();
    let (with_break, with_huge_id, cancelled_only, rejected_unknown) =
        (phantom(), phantom(), phantom(), phantom());
    let placed = |order_id: &str, correlation_id: &str| {
        events::OrderPlaced {
            event_id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_owned(),
            customer_id: "poison".into(),
            currency: "EUR".into(),
            total_minor: 100,
            correlation_id: correlation_id.to_owned(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let huge_id: String = (0..20_000).map(|_| fastrand::alphanumeric()).collect();
    let id = |what: &str| Some(format!("poison-{round}-{what}"));
    // Every message its own id: JetStream would drop one id seen twice.
    let batch: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        (
            "orders.placed",
            id("placed-garbage"),
            b"\xff\xfe not protobuf".to_vec(),
        ),
        ("orders.placed", None, b"\x00\x01 no message id".to_vec()),
        (
            "orders.placed",
            id("placed-not-a-uuid"),
            placed("not-a-uuid", "poison"),
        ),
        (
            "orders.placed",
            id("line-break"),
            placed(&with_break, "chaos\r\nNats-Msg-Id: forged"),
        ),
        (
            "orders.placed",
            Some(huge_id),
            placed(&with_huge_id, "poison"),
        ),
        (
            "orders.cancelled",
            id("cancelled-garbage"),
            b"\xff\xff".to_vec(),
        ),
        (
            "orders.cancelled",
            id("unknown-order"),
            events::OrderCancelled {
                order_id: cancelled_only.clone(),
                reason: "poison".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "orders.confirmed",
            id("confirmed-garbage"),
            b"\xff\xff".to_vec(),
        ),
        (
            "orders.confirmed",
            id("confirmed-not-a-uuid"),
            events::OrderConfirmed {
                order_id: "not-a-uuid".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "orders.rejected",
            id("nul-reason"),
            events::OrderRejected {
                order_id: rejected_unknown.clone(),
                reason: "declined\0 by\r\nthe bank".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "orders.refunded",
            id("refunded-garbage"),
            b"\xff\xff".to_vec(),
        ),
    ];
    for (subject, message_id, payload) in batch {
        let mut headers = HeaderMap::new();
        headers.insert(MARKER, "1");
        if let Some(message_id) = message_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        }
        // NATS may be between leaders (a fault just struck): try again for a while.
        let mut tries = 0;
        loop {
            let published = async {
                jetstream
                    .publish_with_headers(subject, headers.clone(), payload.clone().into())
                    .await?
                    .await
            }
            .await;
            match published {
                Ok(_) => break,
                Err(err) if tries < 60 => {
                    tries += 1;
                    tracing::debug!(subject, error = %err, "poison publish failed; again");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("poison: publishing on {subject}"));
                }
            }
        }
    }
    Ok(vec![
        with_break,
        with_huge_id,
        cancelled_only,
        rejected_unknown,
    ])
}
