//! What the order service shows an operator through
//! `ordo.operator.v1.OperatorService` beyond its outbox and inbox: its
//! durable status consumers (`GetStatus`) and the order as it stands —
//! placed, and the status it moved to (`GetOrderTrail`).
//!
//! The service has no NATS connection of its own outside the relay and the
//! status consumer, so the view opens one the first time it is asked and
//! keeps it.

use async_nats::jetstream;
use ordo_outbox::StreamSettings;
use ordo_outbox::operator::{ServiceView, consumer_status, entry, unavailable};
use ordo_proto::operator::v1 as api;
use ordo_service_kit::nats::NatsSecurity;
use tokio::sync::Mutex;
use tonic::Status;
use uuid::Uuid;

use crate::domain::{Order, OrderId, OrderStatus};
use crate::status::KINDS;
use crate::store::{OrderStore, StoreError};

/// The order service's part of the operator view.
pub struct OrderView {
    store: OrderStore,
    nats_url: String,
    nats_security: NatsSecurity,
    stream: StreamSettings,
    jetstream: Mutex<Option<jetstream::Context>>,
}

impl OrderView {
    pub fn new(
        store: OrderStore,
        nats_url: String,
        nats_security: NatsSecurity,
        stream: StreamSettings,
    ) -> Self {
        Self {
            store,
            nats_url,
            nats_security,
            stream,
            jetstream: Mutex::new(None),
        }
    }

    async fn jetstream(&self) -> Result<jetstream::Context, String> {
        let mut held = self.jetstream.lock().await;
        if let Some(jetstream) = held.as_ref() {
            return Ok(jetstream.clone());
        }
        let (client, _) = ordo_service_kit::nats::connect_service(
            &self.nats_url,
            &self.nats_security,
            "order-service operator view",
        )
        .await?;
        let jetstream = jetstream::new(client);
        *held = Some(jetstream.clone());
        Ok(jetstream)
    }
}

#[tonic::async_trait]
impl ServiceView for OrderView {
    async fn status(&self, status: &mut api::GetStatusResponse) {
        let jetstream = match self.jetstream().await {
            Ok(jetstream) => jetstream,
            Err(why) => {
                status.unavailable.push(format!("consumers: {why}"));
                return;
            }
        };
        for kind in KINDS {
            let durable = format!("order-service-{kind}");
            match consumer_status(&jetstream, &self.stream.name, &durable).await {
                Ok(consumer) => status.consumers.push(consumer),
                Err(why) => status.unavailable.push(format!("consumers: {why}")),
            }
        }
    }

    async fn order_trail(&self, order_id: Uuid) -> Result<Vec<api::TrailEntry>, Status> {
        match self.store.order_get(OrderId::from_uuid(order_id)).await {
            Ok(order) => Ok(order_trail(&order)),
            Err(StoreError::OrderNotFound(_)) => Ok(Vec::new()),
            Err(StoreError::Unavailable(err) | StoreError::Conflict(err)) => Err(unavailable(err)),
            Err(other) => Err(Status::internal(other.to_string())),
        }
    }
}

/// The order as it stands, as trail entries: placed, and (unless still
/// pending) the status it moved to.
pub fn order_trail(order: &Order) -> Vec<api::TrailEntry> {
    let correlation_id = order.correlation_id.as_str().to_owned();
    let mut entries = vec![api::TrailEntry {
        correlation_id: correlation_id.clone(),
        ..entry(
            order.created_at,
            "placed",
            format!(
                "placed by customer {}: {} line(s), {} {} (minor units)",
                order.customer_id.as_str(),
                order.lines.len(),
                order.total_minor,
                order.currency.as_str()
            ),
        )
    }];
    if order.status != OrderStatus::Pending {
        let (kind, verb) = if order.status == OrderStatus::Cancelled {
            ("cancel_requested", "cancelled by request")
        } else {
            ("status_changed", "status changed")
        };
        let mut text = format!("{verb}: now {}", order.status.as_str());
        if !order.status_reason.is_empty() {
            text.push_str(&format!(" ({})", order.status_reason));
        }
        entries.push(api::TrailEntry {
            correlation_id,
            ..entry(order.updated_at, kind, text)
        });
    }
    entries
}
