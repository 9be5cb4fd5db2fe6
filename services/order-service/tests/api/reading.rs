//! GetOrder and ListOrders: filters, newest-first order, and cursor paging
//! that stays stable while orders keep arriving.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ordo_proto::order::v1::{GetOrderRequest, ListOrdersRequest, Order, OrderStatus};

use crate::helpers::{TestApp, valid_request};

async fn list_all(app: &mut TestApp, request: ListOrdersRequest) -> Vec<Order> {
    list_all_pausing(app, request, std::time::Duration::ZERO).await
}

/// Every page in turn, waiting `pause` between pages.
async fn list_all_pausing(
    app: &mut TestApp,
    mut request: ListOrdersRequest,
    pause: std::time::Duration,
) -> Vec<Order> {
    let mut orders = Vec::new();
    loop {
        let page = app
            .client
            .list_orders(request.clone())
            .await
            .unwrap()
            .into_inner();
        let limit = if request.page_size == 0 {
            50
        } else {
            request.page_size
        };
        assert!(page.orders.len() <= limit as usize);
        orders.extend(page.orders);
        if page.next_page_token.is_empty() {
            return orders;
        }
        request.page_token = page.next_page_token;
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test]
async fn gets_an_order_as_placed() {
    let mut app = TestApp::spawn().await;
    let placed = app
        .client
        .place_order(valid_request())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let fetched = app
        .client
        .get_order(GetOrderRequest {
            order_id: placed.order_id.to_uppercase(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(fetched, placed);
}

#[tokio::test]
async fn filters_by_customer_and_status_newest_first() {
    let mut app = TestApp::spawn().await;
    let mut placed = Vec::new();
    for n in 0..6 {
        let mut request = valid_request();
        request.customer_id = format!("cust-{}", n % 2);
        let order = app.client.place_order(request).await.unwrap();
        placed.push(order.into_inner().order.unwrap());
    }
    let cancelled = &placed[4];
    app.execute(&format!(
        "UPDATE orders SET status = 'CANCELLED' WHERE id = '{}'",
        cancelled.order_id
    ))
    .await;

    let everyone = list_all(&mut app, ListOrdersRequest::default()).await;
    let ids: Vec<&str> = everyone.iter().map(|o| o.order_id.as_str()).collect();
    let newest_first: Vec<&str> = placed.iter().rev().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, newest_first);

    let cust_0 = list_all(
        &mut app,
        ListOrdersRequest {
            customer_id: "cust-0".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(cust_0.len(), 3);
    assert!(cust_0.iter().all(|o| o.customer_id == "cust-0"));

    let pending_cust_0 = list_all(
        &mut app,
        ListOrdersRequest {
            customer_id: "cust-0".into(),
            status: OrderStatus::Pending.into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    let ids: HashSet<&str> = pending_cust_0.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(cancelled.order_id.as_str()));
}

#[tokio::test]
async fn a_token_only_continues_its_own_filters() {
    let mut app = TestApp::spawn().await;
    for _ in 0..3 {
        app.client.place_order(valid_request()).await.unwrap();
    }
    let first = app
        .client
        .list_orders(ListOrdersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = app
        .client
        .list_orders(ListOrdersRequest {
            page_size: 1,
            customer_id: "cust-42".into(),
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn paging_during_concurrent_inserts_returns_every_existing_order_once() {
    let mut app = TestApp::spawn().await;
    let mut existing = HashSet::new();
    for _ in 0..90 {
        let order = app.client.place_order(valid_request()).await.unwrap();
        existing.insert(order.into_inner().order.unwrap().order_id);
    }

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let mut client = app.new_client().await;
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut written = 0;
            while writing.load(Ordering::Relaxed) && written < 2_000 {
                client.place_order(valid_request()).await.unwrap();
                written += 1;
            }
            written
        })
    };

    // Pausing between pages lets the writer land orders meanwhile.
    let request = ListOrdersRequest {
        page_size: 7,
        ..Default::default()
    };
    let pages = list_all_pausing(&mut app, request, std::time::Duration::from_millis(5)).await;
    let seen: Vec<String> = pages.into_iter().map(|o| o.order_id).collect();
    writing.store(false, Ordering::Relaxed);
    let written_meanwhile = writer.await.unwrap();

    assert!(written_meanwhile > 0, "the writer never ran");
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "an order was returned twice");
    let missing: Vec<_> = existing
        .iter()
        .filter(|id| !distinct.contains(id))
        .collect();
    assert!(missing.is_empty(), "orders never returned: {missing:?}");
}
