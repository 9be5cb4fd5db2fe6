//! Whatever a client sends, PlaceOrder never panics, and either yields an
//! order with exactly one outbox row or an error with nothing written.

use std::cell::RefCell;
use std::collections::HashMap;

use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::Code;

use crate::helpers::TestApp;

fn arb_text(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid.prop_map(String::from).boxed(),
        3 => proptest::string::string_regex(valid).unwrap().boxed(),
        1 => any::<String>().boxed(),
        1 => Just(String::new()).boxed(),
    ]
}

fn arb_line() -> impl Strategy<Value = OrderLine> {
    (
        prop_oneof![3 => proptest::string::string_regex("[A-Z0-9-]{1,70}").unwrap(), 1 => any::<String>()],
        prop_oneof![3 => 0_u32..=10_050, 1 => any::<u32>()],
        prop_oneof![3 => -10_i64..=1_000_000_000_010, 1 => any::<i64>()],
    )
        .prop_map(|(sku, quantity, unit_price_minor)| OrderLine {
            sku,
            quantity,
            unit_price_minor,
        })
}

fn arb_request() -> impl Strategy<Value = PlaceOrderRequest> {
    (
        arb_text("[A-Za-z0-9_-]{1,66}"),
        prop_oneof![
            6 => proptest::collection::vec(arb_line(), 0..4),
            1 => proptest::collection::vec(arb_line(), 99..=101),
        ],
        arb_text("[A-Z]{3}"),
        prop_oneof![2 => Just(String::new()), 1 => "[a-c]{1,2}", 1 => any::<String>()],
    )
        .prop_map(
            |(customer_id, lines, currency, idempotency_key)| PlaceOrderRequest {
                customer_id,
                lines,
                currency,
                idempotency_key,
            },
        )
}

async fn outbox_rows_of(app: &TestApp, order_id: &str) -> i64 {
    app.count(&format!("outbox WHERE aggregate_id = '{order_id}'"))
        .await
}

async fn check(
    app: &TestApp,
    request: PlaceOrderRequest,
    keys: &RefCell<HashMap<String, PlaceOrderRequest>>,
) -> Result<(), TestCaseError> {
    let before = app.written().await;
    let result = app.client.clone().place_order(request.clone()).await;
    let after = app.written().await;
    match result {
        Ok(response) => {
            let order = response.into_inner().order.unwrap();
            prop_assert_eq!(outbox_rows_of(app, &order.order_id).await, 1);
            let replayed = !request.idempotency_key.is_empty()
                && keys.borrow().contains_key(&request.idempotency_key);
            if replayed {
                prop_assert_eq!(after, before);
            } else {
                prop_assert_eq!(after[0], before[0] + 1);
                prop_assert_eq!(after[3], before[3] + 1);
                if !request.idempotency_key.is_empty() {
                    keys.borrow_mut()
                        .insert(request.idempotency_key.clone(), request);
                }
            }
        }
        Err(status) => {
            prop_assert!(
                matches!(status.code(), Code::InvalidArgument | Code::AlreadyExists),
                "unexpected status {:?}",
                status
            );
            prop_assert_eq!(after, before, "an error wrote something");
        }
    }
    Ok(())
}

#[test]
fn arbitrary_requests_yield_an_order_and_one_event_or_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn());
    let keys = RefCell::new(HashMap::new());
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&arb_request(), |request| {
        runtime.block_on(check(&app, request, &keys))
    });
    if let Err(err) = outcome {
        panic!("{err}");
    }
}
