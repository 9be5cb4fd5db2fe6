//! Nothing a request or a message carries can crash, freeze or flood the
//! order service: text that PostgreSQL or a header cannot hold, message ids
//! of any size, input echoed into errors, pages of large orders, a list of
//! NATS servers whose first is down.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt as _;
use ordo_proto::events::v1::OrderRejected;
use ordo_proto::order::v1::{GetOrderRequest, ListOrdersRequest, OrderStatus, PlaceOrderRequest};
use ordo_proto::outbox::v1::{DiscardParkedEventRequest, ListParkedEventsRequest};
use ordo_testkit::{TestDatabase, eventually};
use prost::Message as _;

use crate::helpers::{TestApp, line, valid_request};

async fn publish_with_id(app: &TestApp, kind: &str, message_id: &str, payload: Vec<u8>) {
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    jetstream::new(client)
        .send_publish(
            format!("{}orders.{kind}", app.stream.subject_prefix),
            PublishMessage::build()
                .payload(payload.into())
                .message_id(message_id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn place(app: &TestApp) -> String {
    app.client
        .clone()
        .place_order(valid_request())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .order_id
}

async fn order_of(app: &TestApp, order_id: &str) -> ordo_proto::order::v1::Order {
    app.client
        .clone()
        .get_order(GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
}

/// Random letters and digits: text PostgreSQL cannot compress away.
fn noise(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_with_text_postgres_cannot_store_and_a_huge_message_id_still_applies_once() {
    let app = TestApp::spawn_with_relay().await;
    let a = place(&app).await;
    let b = place(&app).await;
    // A NUL byte in the reason (PostgreSQL text refuses it), line breaks.
    let reason = "declined\0 by\r\nthe bank";
    publish_with_id(
        &app,
        "rejected",
        "v-nul",
        OrderRejected {
            order_id: a.clone(),
            reason: reason.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    // A Nats-Msg-Id of 20 KB: no index could hold it as a key.
    let huge_id = noise(20_000);
    let verdict = OrderRejected {
        order_id: b.clone(),
        reason: "declined".into(),
        ..Default::default()
    }
    .encode_to_vec();
    publish_with_id(&app, "rejected", &huge_id, verdict.clone()).await;
    eventually("both orders rejected", Duration::from_secs(20), || async {
        order_of(&app, &a).await.status() == OrderStatus::Rejected
            && order_of(&app, &b).await.status() == OrderStatus::Rejected
    })
    .await;
    let stored = order_of(&app, &a).await.status_reason;
    assert!(!stored.contains(['\0', '\r', '\n']), "{stored:?}");
    assert!(
        stored.contains("declined") && stored.contains("the bank"),
        "{stored:?}"
    );
    assert_eq!(app.count("inbox").await, 2);
}

#[tokio::test]
async fn echoed_input_is_bounded_in_every_error() {
    let app = TestApp::spawn().await;
    // As big as the server takes (its limit is 4 MiB a message).
    let huge = "z".repeat(4_000_000);
    let mut client = app.client.clone();
    let status = client
        .get_order(GetOrderRequest {
            order_id: huge.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        status.message().len() < 512,
        "{} bytes",
        status.message().len()
    );
    let big = "z".repeat(900_000);
    let status = client
        .place_order(PlaceOrderRequest {
            customer_id: big.clone(),
            currency: big.clone(),
            idempotency_key: big.clone(),
            lines: vec![line(&big, 1, 1)],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().len() < 1024,
        "{} bytes",
        status.message().len()
    );
    assert!(
        status.details().len() < 64 * 1024,
        "{} bytes of details",
        status.details().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_large_orders_fits_a_client_and_the_next_page_goes_on() {
    let app = TestApp::spawn().await;
    let customer = format!("big-{}", noise(8));
    // Each SKU its full 64 characters, four bytes each: 500 orders of 100
    // such lines are over 12 MB.
    let wide = "\u{1D54F}".repeat(60);
    let lines: Vec<_> = (0..100)
        .map(|n| line(&format!("{n:02}-{wide}"), 1, 100))
        .collect();
    let mut placed: Vec<String> = futures::stream::iter(0..500)
        .map(|_| {
            let mut client = app.client.clone();
            let request = PlaceOrderRequest {
                customer_id: customer.clone(),
                currency: "EUR".into(),
                idempotency_key: String::new(),
                lines: lines.clone(),
            };
            async move {
                let order = client.place_order(request).await.unwrap();
                order.into_inner().order.unwrap().order_id
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // A client with gRPC's default 4 MiB limit reads every page.
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .client
            .clone()
            .list_orders(ListOrdersRequest {
                customer_id: customer.clone(),
                page_size: 500,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        listed.extend(page.orders.into_iter().map(|order| order.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(
        pages >= 4,
        "13 MB of orders take several pages, not {pages}"
    );
    listed.sort();
    placed.sort();
    assert_eq!(listed, placed, "every order listed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_nats_servers_whose_first_is_down_still_delivers() {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let app = TestApp::spawn_on(database, url, |mut settings| {
        settings.relay.nats_url = format!("nats://127.0.0.1:1,{}", settings.relay.nats_url);
        settings
    })
    .await;
    let order_id = place(&app).await;
    eventually(
        "the order's event in the stream",
        Duration::from_secs(20),
        || async {
            app.stream
                .messages(&app.nats_url)
                .await
                .unwrap_or_default()
                .iter()
                .any(|message| message.header("ce-subject") == Some(order_id.as_str()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_is_listed_and_discarded_by_an_operator_and_its_aggregate_flows_again() {
    const TOKEN: &str = "ops-token-0123456789";
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    let app = TestApp::spawn_on(database, url, |mut settings| {
        settings.admin_tokens = vec![("ops".into(), TOKEN.into())];
        settings.relay.partitions = ordo_outbox::PartitionCount::new(1).unwrap();
        settings
    })
    .await;
    // An event no header can carry (as a bug, or an old row, might leave),
    // and a later event of the same aggregate.
    let one = ordo_outbox::PartitionCount::new(1).unwrap();
    for (correlation_id, payload) in [
        ("bad\r\nheader", b"first".to_vec()),
        ("ok", b"second".to_vec()),
    ] {
        let event = ordo_outbox::OutboxEvent::new(
            "/ordo/test",
            "order",
            "stuck-aggregate".into(),
            "orders.placed",
            "ordo.test.Event",
            chrono::Utc::now(),
            correlation_id,
        )
        .with_payload(payload);
        ordo_outbox::outbox_insert_in_txn(&app.db, one, &event)
            .await
            .unwrap();
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = ordo_proto::OutboxAdminServiceClient::new(channel);
    fn with_token<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        request
    }
    let unauthenticated = admin
        .list_parked_events(ListParkedEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    eventually("the bad event parked", Duration::from_secs(20), || async {
        app.count("outbox_parked").await == 1
    })
    .await;
    let parked = admin
        .list_parked_events(with_token(ListParkedEventsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].aggregate_id, "stuck-aggregate");
    assert!(
        parked[0].reason.contains("line break"),
        "{}",
        parked[0].reason
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("outbox").await,
        1,
        "the later event waits behind it"
    );

    let refused = admin
        .discard_parked_event(with_token(DiscardParkedEventRequest {
            id: parked[0].id,
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    admin
        .discard_parked_event(with_token(DiscardParkedEventRequest {
            id: parked[0].id,
            reason: "a bug wrote it; the customer was told".into(),
        }))
        .await
        .unwrap();
    eventually(
        "the later event published",
        Duration::from_secs(20),
        || async { app.count("outbox").await == 0 },
    )
    .await;
    let gone = admin
        .discard_parked_event(with_token(DiscardParkedEventRequest {
            id: parked[0].id,
            reason: "again".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}
