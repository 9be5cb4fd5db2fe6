//! `ordo.order.v1.OrderService` over the store: parse the request into domain
//! values, call the store, answer in proto. Each handler reads the
//! correlation id first, so every answer (errors too) carries it.

mod convert;
mod correlation;
mod error;

use ordo_proto::order::v1 as proto;
use ordo_proto::order::v1::order_service_server::OrderService;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

pub use correlation::METADATA_KEY as CORRELATION_ID_METADATA;
pub use error::ApiError;

use crate::domain::{
    CancelReason, CorrelationId, ListQuery, NewOrder, OrderId, PageCursor, Violations,
};
use crate::store::{OrderStore, Placement};

/// The gRPC face of the order store.
#[derive(Debug, Clone)]
pub struct OrderApi {
    store: OrderStore,
}

impl OrderApi {
    pub fn new(store: OrderStore) -> Self {
        Self { store }
    }

    async fn place(
        &self,
        request: proto::PlaceOrderRequest,
        correlation_id: CorrelationId,
    ) -> Result<proto::PlaceOrderResponse, ApiError> {
        let new_order = NewOrder::parse(&convert::draft_from_proto(request))?;
        let placement = self.store.order_create(new_order, correlation_id).await?;
        match &placement {
            Placement::Created(order) => tracing::info!(order_id = %order.id, "order placed"),
            Placement::Replayed(order) => {
                tracing::info!(order_id = %order.id, "order replayed for idempotency key")
            }
        }
        Ok(proto::PlaceOrderResponse {
            order: Some(convert::order_to_proto(placement.order())),
        })
    }

    async fn get(
        &self,
        request: proto::GetOrderRequest,
    ) -> Result<proto::GetOrderResponse, ApiError> {
        let id = parse_order_id(&request.order_id)?;
        let order = self.store.order_get(id).await?;
        Ok(proto::GetOrderResponse {
            order: Some(convert::order_to_proto(&order)),
        })
    }

    async fn list(
        &self,
        request: proto::ListOrdersRequest,
    ) -> Result<proto::ListOrdersResponse, ApiError> {
        let query = ListQuery::parse(
            &request.customer_id,
            convert::status_filter(request.status),
            request.page_size,
            &request.page_token,
        )?;
        let page = self.store.order_list(&query).await?;
        let mut orders: Vec<proto::Order> =
            page.orders.iter().map(convert::order_to_proto).collect();
        // A page of large orders is cut short before it outgrows what a
        // client accepts; the token then continues after the last one sent.
        let kept = ordo_proto::items_within(&orders, ordo_proto::MAX_PAGE_BYTES);
        let next = if kept < orders.len() {
            orders.truncate(kept);
            page.orders.get(kept - 1).map(|last| PageCursor {
                created_at: last.created_at,
                id: last.id,
            })
        } else {
            page.next
        };
        Ok(proto::ListOrdersResponse {
            orders,
            next_page_token: next
                .map(|cursor| query.next_page_token(cursor))
                .unwrap_or_default(),
        })
    }

    async fn cancel(
        &self,
        request: proto::CancelOrderRequest,
        correlation_id: CorrelationId,
    ) -> Result<proto::CancelOrderResponse, ApiError> {
        let mut violations = Violations::default();
        let id = violations.check("order_id", OrderId::parse(&request.order_id));
        let reason = violations.check("reason", CancelReason::parse(&request.reason));
        let (id, reason) = violations.into_result(|| id.zip(reason))?;
        let order = self.store.order_cancel(id, reason, correlation_id).await?;
        tracing::info!(order_id = %order.id, "order cancelled");
        Ok(proto::CancelOrderResponse {
            order: Some(convert::order_to_proto(&order)),
        })
    }
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|description| Violations::one("order_id", description).into())
}

/// Runs `handler` inside a span carrying the request's correlation id and
/// tags the answer with it.
async fn handle<T, F>(
    method: &'static str,
    correlation_id: Result<CorrelationId, ApiError>,
    handler: impl FnOnce(CorrelationId) -> F,
) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, ApiError>>,
{
    let correlation_id = match correlation_id {
        Ok(id) => id,
        Err(err) => return correlation::respond(Err(err), None),
    };
    // The request's span (the server layer's) carries the id too.
    tracing::Span::current().record("correlation_id", correlation_id.as_str());
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format!("handle {method}"),
        method,
        correlation_id = correlation_id.as_str()
    );
    let result = handler(correlation_id.clone())
        .instrument(span.clone())
        .await;
    if let Err(err) = &result {
        span.in_scope(|| tracing::info!(error = %err, "request refused"));
    }
    correlation::respond(result, Some(&correlation_id))
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn place_order(
        &self,
        request: Request<proto::PlaceOrderRequest>,
    ) -> Result<Response<proto::PlaceOrderResponse>, Status> {
        let correlation_id = correlation::from_request(&request);
        handle("PlaceOrder", correlation_id, |id| {
            self.place(request.into_inner(), id)
        })
        .await
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::GetOrderResponse>, Status> {
        let correlation_id = correlation::from_request(&request);
        handle("GetOrder", correlation_id, |_| {
            self.get(request.into_inner())
        })
        .await
    }

    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        let correlation_id = correlation::from_request(&request);
        handle("ListOrders", correlation_id, |_| {
            self.list(request.into_inner())
        })
        .await
    }

    async fn cancel_order(
        &self,
        request: Request<proto::CancelOrderRequest>,
    ) -> Result<Response<proto::CancelOrderResponse>, Status> {
        let correlation_id = correlation::from_request(&request);
        handle("CancelOrder", correlation_id, |id| {
            self.cancel(request.into_inner(), id)
        })
        .await
    }
}
