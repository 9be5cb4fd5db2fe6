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

/// The published rules, restated independently of the service's code.
fn is_valid(request: &PlaceOrderRequest) -> bool {
    let customer = &request.customer_id;
    let customer_ok = (1..=64).contains(&customer.len())
        && customer
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let lines_ok = (1..=100).contains(&request.lines.len())
        && request.lines.iter().all(|line| {
            (1..=64).contains(&line.sku.chars().count())
                && !line.sku.chars().any(char::is_control)
                && (1..=10_000).contains(&line.quantity)
                && (0..=1_000_000_000_000).contains(&line.unit_price_minor)
        });
    let currency_ok =
        request.currency.len() == 3 && request.currency.bytes().all(|b| b.is_ascii_uppercase());
    let key = &request.idempotency_key;
    let key_ok = key.is_empty() || (key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic()));
    customer_ok && lines_ok && currency_ok && key_ok
}

/// What was placed under each idempotency key: the request and its order.
type Keys = RefCell<HashMap<String, (PlaceOrderRequest, String)>>;

async fn check(
    app: &TestApp,
    request: PlaceOrderRequest,
    keys: &Keys,
) -> Result<(), TestCaseError> {
    let before = app.written().await;
    let result = app.client.clone().place_order(request.clone()).await;
    let after = app.written().await;
    let key = request.idempotency_key.clone();
    let earlier = keys.borrow().get(&key).cloned().filter(|_| !key.is_empty());

    if !is_valid(&request) {
        let status = result.err();
        prop_assert_eq!(status.map(|s| s.code()), Some(Code::InvalidArgument));
        prop_assert_eq!(after, before, "a refused request wrote something");
        return Ok(());
    }
    match earlier {
        Some((first, order_id)) if first == request => {
            let order = result.map_err(|s| TestCaseError::fail(format!("{s:?}")))?;
            prop_assert_eq!(&order.into_inner().order.unwrap().order_id, &order_id);
            prop_assert_eq!(after, before, "a replay wrote something");
        }
        Some(_) => {
            prop_assert_eq!(result.err().map(|s| s.code()), Some(Code::AlreadyExists));
            prop_assert_eq!(after, before, "a conflicting key wrote something");
        }
        None => {
            let order = result.map_err(|s| TestCaseError::fail(format!("{s:?}")))?;
            let order = order.into_inner().order.unwrap();
            prop_assert_eq!(outbox_rows_of(app, &order.order_id).await, 1);
            prop_assert_eq!(after[0], before[0] + 1);
            prop_assert_eq!(after[1], before[1] + request.lines.len() as i64);
            prop_assert_eq!(after[3], before[3] + 1);
            if !key.is_empty() {
                keys.borrow_mut().insert(key, (request, order.order_id));
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_requests_yield_an_order_and_one_event_or_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn());
    let keys: Keys = RefCell::new(HashMap::new());
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&arb_request(), |request| {
        runtime.block_on(async {
            check(&app, request.clone(), &keys).await?;
            // Every request once more: a keyed valid one must now replay.
            check(&app, request, &keys).await
        })
    });
    if let Err(err) = outcome {
        panic!("{err}");
    }
}
