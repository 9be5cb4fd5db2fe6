//! Orders placed through the API reach the stream exactly once each, an
//! order's events in the order they were written (invariants 1, 2 and 4).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::order::v1::CancelOrderRequest;
use ordo_testkit::eventually;

use crate::helpers::{TestApp, valid_request};

const ORDERS: usize = 10_000;
const CANCEL_EVERY: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_orders_reach_the_stream_exactly_once_in_order() {
    let app = TestApp::spawn_with_relay().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(app.new_client().await);
    }

    let order_ids: Vec<(usize, String)> = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            async move {
                let mut request = valid_request();
                request.customer_id = format!("cust-{}", n % 97);
                let order = client
                    .place_order(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .order
                    .unwrap();
                if n % CANCEL_EVERY == 0 {
                    client
                        .cancel_order(CancelOrderRequest {
                            order_id: order.order_id.clone(),
                            reason: "test".into(),
                        })
                        .await
                        .unwrap();
                }
                (n, order.order_id)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let expected_events = ORDERS + ORDERS / CANCEL_EVERY;

    eventually("the outbox to drain", Duration::from_secs(60), || async {
        app.count("outbox").await == 0
    })
    .await;
    assert_eq!(app.count("orders").await, ORDERS as i64);

    let messages = app.stream.messages(&app.nats_url).await.unwrap();
    assert_eq!(messages.len(), expected_events, "messages in the stream");
    let ids: HashSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), expected_events, "distinct Nats-Msg-Id");

    let mut per_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for message in &messages {
        let order_id = message.header("ce-subject").expect("ce-subject header");
        let kind = message.subject.rsplit('.').next().unwrap();
        per_order.entry(order_id).or_default().push(kind);
    }
    assert_eq!(per_order.len(), ORDERS);
    for (n, order_id) in &order_ids {
        let kinds = &per_order[order_id.as_str()];
        if n % CANCEL_EVERY == 0 {
            assert_eq!(kinds, &["placed", "cancelled"], "order {order_id}");
        } else {
            assert_eq!(kinds, &["placed"], "order {order_id}");
        }
    }
}
