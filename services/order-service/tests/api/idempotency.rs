//! A retried PlaceOrder returns the first order and emits no second event.

use futures::future::join_all;
use ordo_proto::order::v1::PlaceOrderResponse;

use crate::helpers::{TestApp, valid_request};

#[tokio::test]
async fn fifty_concurrent_calls_with_one_key_make_one_order() {
    let app = TestApp::spawn().await;
    let mut request = valid_request();
    request.idempotency_key = "checkout-7f3a".into();

    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(app.new_client().await);
    }
    let calls = (0..50).map(|n| {
        let mut client = clients[n % clients.len()].clone();
        let request = request.clone();
        async move { client.place_order(request).await.map(|r| r.into_inner()) }
    });
    let responses: Vec<PlaceOrderResponse> = join_all(calls)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    assert_eq!(responses.len(), 50);
    assert!(responses.iter().all(|response| *response == responses[0]));
    assert_eq!(app.written().await, [1, 2, 1, 1]);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_already_exists() {
    let mut app = TestApp::spawn().await;
    let mut first = valid_request();
    first.idempotency_key = "key-1".into();
    app.client.place_order(first.clone()).await.unwrap();

    let mut other = first.clone();
    other.lines[0].quantity += 1;
    let status = app.client.place_order(other).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);

    let mut other_customer = first.clone();
    other_customer.customer_id = "someone-else".into();
    let status = app.client.place_order(other_customer).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(app.written().await, [1, 2, 1, 1]);
}

#[tokio::test]
async fn distinct_keys_and_no_key_make_distinct_orders() {
    let mut app = TestApp::spawn().await;
    let mut request = valid_request();
    request.idempotency_key = "a".into();
    let a = app.client.place_order(request.clone()).await.unwrap();
    request.idempotency_key = "b".into();
    let b = app.client.place_order(request.clone()).await.unwrap();
    request.idempotency_key = String::new();
    app.client.place_order(request.clone()).await.unwrap();
    app.client.place_order(request).await.unwrap();

    assert_ne!(a.into_inner().order, b.into_inner().order);
    assert_eq!(app.written().await, [4, 8, 2, 4]);
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_their_retention_and_their_orders_stay() {
    let database = ordo_testkit::TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let app = TestApp::spawn_on(database, url, |mut settings| {
        settings.outbox_relay = false;
        settings.idempotency_key_retention.interval = std::time::Duration::from_millis(100);
        settings
    })
    .await;
    let mut old = valid_request();
    old.idempotency_key = "old-key-1".into();
    let mut recent = valid_request();
    recent.idempotency_key = "recent-key-1".into();
    let old_order = app.client.clone().place_order(old.clone()).await.unwrap();
    app.client.clone().place_order(recent).await.unwrap();
    app.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '8 days' WHERE key = 'old-key-1'",
    )
    .await;
    ordo_testkit::eventually(
        "the old key swept",
        std::time::Duration::from_secs(10),
        || async { app.count("idempotency_keys").await == 1 },
    )
    .await;
    assert_eq!(app.count("orders").await, 2, "orders stay");
    // Past its retention the key is free: a retry places a new order.
    let again = app.client.clone().place_order(old).await.unwrap();
    assert_ne!(
        again.into_inner().order.unwrap().order_id,
        old_order.into_inner().order.unwrap().order_id
    );
}
