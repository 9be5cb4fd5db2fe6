//! CancelOrder: PENDING or CONFIRMED → CANCELLED with an OrderCancelled
//! outbox row in the same transaction; any other state is FAILED_PRECONDITION
//! and writes nothing.

use ordo_proto::events::v1::OrderCancelled;
use ordo_proto::order::v1::{CancelOrderRequest, GetOrderRequest, OrderStatus};
use prost::Message as _;
use tonic::Code;

use crate::helpers::{TestApp, valid_request};

async fn place(app: &mut TestApp) -> String {
    let response = app.client.place_order(valid_request()).await.unwrap();
    response.into_inner().order.unwrap().order_id
}

fn cancel(order_id: &str) -> CancelOrderRequest {
    CancelOrderRequest {
        order_id: order_id.to_owned(),
        reason: "changed my mind".into(),
    }
}

#[tokio::test]
async fn cancels_a_pending_order_with_its_event() {
    let mut app = TestApp::spawn().await;
    let order_id = place(&mut app).await;

    let mut request = tonic::Request::new(cancel(&order_id));
    request
        .metadata_mut()
        .insert("x-correlation-id", "cancel-1".parse().unwrap());
    let order = app
        .client
        .cancel_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();

    assert_eq!(order.status(), OrderStatus::Cancelled);
    assert_eq!(order.status_reason, "changed my mind");
    let seconds_nanos = |at: Option<prost_types::Timestamp>| at.map(|at| (at.seconds, at.nanos));
    assert!(seconds_nanos(order.update_time) > seconds_nanos(order.create_time));
    let stored = app
        .client
        .get_order(GetOrderRequest {
            order_id: order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(stored, order);

    let rows = app.outbox().await;
    assert_eq!(rows.len(), 2);
    let row = &rows[1];
    assert_eq!(row.subject, "orders.cancelled");
    assert_eq!(row.aggregate_id, order_id);
    assert_eq!(
        row.partition, rows[0].partition,
        "one aggregate, one partition"
    );
    assert_eq!(row.headers["x-correlation-id"], "cancel-1");
    let event = OrderCancelled::decode(row.payload.as_slice()).unwrap();
    assert_eq!(event.order_id, order_id);
    assert_eq!(event.reason, "changed my mind");
    assert_eq!(event.event_id, row.event_id.to_string());
    assert_eq!(event.correlation_id, "cancel-1");
}

#[tokio::test]
async fn cancels_a_confirmed_order() {
    let mut app = TestApp::spawn().await;
    let order_id = place(&mut app).await;
    app.execute(&format!(
        "UPDATE orders SET status = 'CONFIRMED' WHERE id = '{order_id}'"
    ))
    .await;
    let order = app.client.cancel_order(cancel(&order_id)).await.unwrap();
    assert_eq!(
        order.into_inner().order.unwrap().status(),
        OrderStatus::Cancelled
    );
    assert_eq!(app.count("outbox").await, 2);
}

#[tokio::test]
async fn ended_orders_cannot_be_cancelled_and_nothing_changes() {
    let mut app = TestApp::spawn().await;
    let cancelled = place(&mut app).await;
    app.client.cancel_order(cancel(&cancelled)).await.unwrap();
    let rejected = place(&mut app).await;
    app.execute(&format!(
        "UPDATE orders SET status = 'REJECTED', status_reason = 'declined' WHERE id = '{rejected}'"
    ))
    .await;
    let before = app.written().await;

    for (order_id, state) in [(cancelled, "cancelled"), (rejected.clone(), "rejected")] {
        let status = app
            .client
            .cancel_order(cancel(&order_id))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains(state), "{}", status.message());
    }
    assert_eq!(app.written().await, before);
    let order = app
        .client
        .get_order(GetOrderRequest { order_id: rejected })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Rejected);
    assert_eq!(order.status_reason, "declined");
}

#[tokio::test]
async fn unknown_orders_are_not_found() {
    let mut app = TestApp::spawn().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = app.client.cancel_order(cancel(&unknown)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .client
        .get_order(GetOrderRequest { order_id: unknown })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(app.written().await, [0, 0, 0, 0]);
}
