//! What an operator asks of the order service: an order's trail (placed,
//! its event waiting in the outbox or published, the verdict taken from the
//! stream with its sequence, the status it moved to) and the backlog — over
//! a real database and NATS.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use ordo_proto::OperatorServiceClient;
use ordo_proto::events::v1::OrderConfirmed;
use ordo_proto::operator::v1::{GetOrderTrailRequest, GetStatusRequest, TrailEntry};
use ordo_testkit::{TestDatabase, eventually};
use prost::Message as _;
use tonic::transport::Channel;

use crate::helpers::{TestApp, valid_request};

const TOKEN: &str = "operator-token-0123456789";

async fn spawn(relay: bool) -> TestApp {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url().to_owned();
    TestApp::spawn_on(database, url, |mut settings| {
        settings.outbox_relay = relay;
        settings.status_consumer = relay;
        settings.admin_tokens = vec![("oncall".to_owned(), TOKEN.into())];
        settings
    })
    .await
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

async fn operator(app: &TestApp) -> OperatorServiceClient<Channel> {
    OperatorServiceClient::connect(format!("http://{}", app.addr))
        .await
        .unwrap()
}

async fn trail(app: &TestApp, order_id: &str) -> Vec<TrailEntry> {
    operator(app)
        .await
        .get_order_trail(authorized(GetOrderTrailRequest {
            order_id: order_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .entries
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

#[tokio::test]
async fn an_unpublished_event_waits_in_the_trail_and_the_backlog() {
    let app = spawn(false).await;
    let order_id = place(&app).await;

    let entries = trail(&app, &order_id).await;
    let kinds: Vec<&str> = entries.iter().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(kinds, ["placed", "outbox_waiting"], "{entries:#?}");
    assert!(!entries[0].correlation_id.is_empty());
    assert!(entries[1].subject.ends_with("orders.placed"));
    assert!(!entries[1].message_id.is_empty());

    let status = operator(&app)
        .await
        .get_status(authorized(GetStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.service, "order-service");
    let outbox = status.outbox.unwrap();
    let waiting: u64 = outbox
        .partitions
        .iter()
        .map(|partition| partition.backlog)
        .sum();
    assert_eq!(waiting, 1);
    let partition = outbox
        .partitions
        .iter()
        .find(|partition| partition.backlog == 1)
        .unwrap();
    assert!(partition.oldest_create_time.is_some());
    assert!(partition.lease_holder.is_empty(), "no relay runs");

    // An order nobody placed has an empty trail; a malformed id is refused.
    assert!(
        trail(&app, "0190a8c2-0000-7000-8000-000000000001")
            .await
            .is_empty()
    );
    let refused = operator(&app)
        .await
        .get_order_trail(authorized(GetOrderTrailRequest {
            order_id: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let refused = operator(&app)
        .await
        .get_order_trail(GetOrderTrailRequest {
            order_id: order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_taken_from_the_stream_is_in_the_trail_with_its_sequence() {
    let app = spawn(true).await;
    let order_id = place(&app).await;
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    jetstream::new(client)
        .send_publish(
            format!("{}orders.confirmed", app.stream.subject_prefix),
            PublishMessage::build()
                .payload(
                    OrderConfirmed {
                        order_id: order_id.clone(),
                        payment_id: "pay-1".into(),
                        ..Default::default()
                    }
                    .encode_to_vec()
                    .into(),
                )
                .message_id("verdict-1"),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    eventually(
        "the verdict taken, the placement published",
        Duration::from_secs(20),
        || async {
            let entries = trail(&app, &order_id).await;
            entries.iter().any(|entry| entry.kind == "received")
                && !entries.iter().any(|entry| entry.kind == "outbox_waiting")
        },
    )
    .await;
    let entries = trail(&app, &order_id).await;
    let published = entries
        .iter()
        .find(|entry| entry.kind == "published")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(published.message_id, "verdict-1");
    assert!(published.stream_sequence > 0);
    let received = entries
        .iter()
        .find(|entry| entry.kind == "received")
        .unwrap();
    assert_eq!(received.stream_sequence, published.stream_sequence);
    assert!(received.text.contains("confirmed"), "{}", received.text);
    let changed = entries
        .iter()
        .find(|entry| entry.kind == "status_changed")
        .unwrap();
    assert!(changed.text.contains("CONFIRMED"), "{}", changed.text);

    let status = operator(&app)
        .await
        .get_status(authorized(GetStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(status.unavailable.is_empty(), "{:?}", status.unavailable);
    let mut names: Vec<&str> = status
        .consumers
        .iter()
        .map(|consumer| consumer.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "order-service-confirmed",
            "order-service-refunded",
            "order-service-rejected"
        ]
    );
    assert!(status.dead_letters.is_empty());
    let outbox = status.outbox.unwrap();
    assert!(
        outbox
            .partitions
            .iter()
            .all(|partition| !partition.lease_holder.is_empty()),
        "the relay holds every partition: {:?}",
        outbox.partitions
    );
}
