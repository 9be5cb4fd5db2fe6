//! Bad input gets INVALID_ARGUMENT with google.rpc.BadRequest field
//! violations, every violation at once, and writes nothing (invariant 6).

use ordo_proto::order::v1::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, PlaceOrderRequest,
};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, line, valid_request};

/// The field paths a status's BadRequest details name, in order.
fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

type Mutation = fn(&mut PlaceOrderRequest);

const RULES: &[(&str, Mutation, &str)] = &[
    ("empty customer", |r| r.customer_id.clear(), "customer_id"),
    (
        "customer too long",
        |r| r.customer_id = "c".repeat(65),
        "customer_id",
    ),
    (
        "customer with a space",
        |r| r.customer_id = "cust 1".into(),
        "customer_id",
    ),
    (
        "customer not ascii",
        |r| r.customer_id = "kundé".into(),
        "customer_id",
    ),
    ("no lines", |r| r.lines.clear(), "lines"),
    (
        "101 lines",
        |r| r.lines = vec![line("s", 1, 1); 101],
        "lines",
    ),
    ("empty sku", |r| r.lines[1].sku.clear(), "lines[1].sku"),
    (
        "sku too long",
        |r| r.lines[0].sku = "s".repeat(65),
        "lines[0].sku",
    ),
    (
        "sku with control char",
        |r| r.lines[0].sku = "a\u{7}".into(),
        "lines[0].sku",
    ),
    (
        "zero quantity",
        |r| r.lines[0].quantity = 0,
        "lines[0].quantity",
    ),
    (
        "quantity too big",
        |r| r.lines[1].quantity = 10_001,
        "lines[1].quantity",
    ),
    (
        "negative price",
        |r| r.lines[0].unit_price_minor = -1,
        "lines[0].unit_price_minor",
    ),
    (
        "price too big",
        |r| r.lines[0].unit_price_minor = 1_000_000_000_001,
        "lines[0].unit_price_minor",
    ),
    (
        "lower-case currency",
        |r| r.currency = "eur".into(),
        "currency",
    ),
    ("long currency", |r| r.currency = "EURO".into(), "currency"),
    ("empty currency", |r| r.currency.clear(), "currency"),
    (
        "key too long",
        |r| r.idempotency_key = "k".repeat(129),
        "idempotency_key",
    ),
    (
        "key with a space",
        |r| r.idempotency_key = "a b".into(),
        "idempotency_key",
    ),
];

#[tokio::test]
async fn each_place_order_rule_names_its_field_and_writes_nothing() {
    let mut app = TestApp::spawn().await;
    for (rule, mutate, field) in RULES {
        let mut request = valid_request();
        mutate(&mut request);
        let status = app.client.place_order(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), [*field], "rule: {rule}");
    }
    assert_eq!(app.written().await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn the_limits_themselves_are_accepted() {
    let mut app = TestApp::spawn().await;
    let request = PlaceOrderRequest {
        customer_id: "C".repeat(64),
        lines: vec![line(&"é".repeat(64), 10_000, 1_000_000_000_000); 100],
        currency: "JPY".into(),
        idempotency_key: "k".repeat(128),
    };
    let order = app.client.place_order(request).await.unwrap().into_inner();
    assert_eq!(
        order.order.unwrap().total_minor,
        100 * 10_000 * 1_000_000_000_000
    );
    let free = PlaceOrderRequest {
        lines: vec![line("gift", 1, 0)],
        ..valid_request()
    };
    app.client.place_order(free).await.unwrap();
}

#[tokio::test]
async fn every_violation_is_listed_at_once() {
    let mut app = TestApp::spawn().await;
    let request = PlaceOrderRequest {
        customer_id: String::new(),
        lines: vec![line("ok", 1, 1), line("", 0, -5)],
        currency: "x".into(),
        idempotency_key: String::new(),
    };
    let status = app.client.place_order(request).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "customer_id",
            "currency",
            "lines[1].sku",
            "lines[1].quantity",
            "lines[1].unit_price_minor"
        ]
    );
    assert_eq!(app.written().await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn bad_ids_filters_and_tokens_are_invalid_arguments() {
    let mut app = TestApp::spawn().await;
    let get = app
        .client
        .get_order(GetOrderRequest {
            order_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&get), ["order_id"]);

    let cancel = app
        .client
        .cancel_order(CancelOrderRequest {
            order_id: "42".into(),
            reason: "r".repeat(513),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&cancel), ["order_id", "reason"]);

    let list = app
        .client
        .list_orders(ListOrdersRequest {
            customer_id: "bad customer".into(),
            status: 99,
            page_size: 501,
            page_token: "nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&list),
        ["customer_id", "status", "page_size", "page_token"]
    );
}

#[tokio::test]
async fn a_malformed_correlation_id_is_refused() {
    let mut app = TestApp::spawn().await;
    let mut request = tonic::Request::new(valid_request());
    request
        .metadata_mut()
        .insert("x-correlation-id", "x".repeat(200).parse().unwrap());
    let status = app.client.place_order(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["x-correlation-id"]);
    assert_eq!(app.written().await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn a_hundred_bad_lines_still_get_a_readable_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let request = PlaceOrderRequest {
        lines: vec![line(&"x".repeat(65), 0, -1); 100],
        ..valid_request()
    };
    let status = app.client.place_order(request).await.unwrap_err();
    let fields = violated_fields(&status);
    assert_eq!(fields.len(), 100);
    assert_eq!(
        fields[..3],
        [
            "lines[0].sku",
            "lines[0].quantity",
            "lines[0].unit_price_minor"
        ]
    );
    assert!(
        status.message().contains("299 more"),
        "{}",
        status.message()
    );
    assert_eq!(app.written().await, [0, 0, 0, 0]);
}
