//! Places an order with the generated Rust client, follows it to its
//! terminal status, and prints it.
//!
//! ```text
//! cargo run -p ordo-proto --example place_order            # http://127.0.0.1:50051
//! ORDO_ORDER_URL=http://order-service:50051 cargo run -p ordo-proto --example place_order
//! ORDO_ORDER_URL=https://127.0.0.1:50051 ORDO_TLS_CA_FILE=ca.crt \
//!   ORDO_TLS_CERT_FILE=client.crt ORDO_TLS_KEY_FILE=client.key \
//!   cargo run -p ordo-proto --example place_order           # mutual TLS
//! ```

use std::time::Duration;

use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{GetOrderRequest, OrderLine, OrderStatus, PlaceOrderRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ORDO_ORDER_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let tls = ordo_proto::client::ClientTls::from_env("ORDO");
    let channel = ordo_proto::client::endpoint(&url, &tls)?.connect().await?;
    let mut client = OrderServiceClient::new(channel);
    let mut request = tonic::Request::new(PlaceOrderRequest {
        customer_id: "rust-example".into(),
        lines: vec![OrderLine {
            sku: "BOOK-DDIA".into(),
            quantity: 1,
            unit_price_minor: 4599,
        }],
        currency: "EUR".into(),
        idempotency_key: format!("rust-example-{}", std::process::id()),
    });
    request
        .metadata_mut()
        .insert("x-correlation-id", "rust-example".parse()?);
    let order = client
        .place_order(request)
        .await?
        .into_inner()
        .order
        .ok_or("no order in the answer")?;
    println!("placed {} ({:?})", order.order_id, order.status());

    for _ in 0..300 {
        let current = client
            .get_order(GetOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await?
            .into_inner()
            .order
            .ok_or("no order in the answer")?;
        if current.status() != OrderStatus::Pending {
            println!(
                "order {} is {:?} {}",
                current.order_id,
                current.status(),
                current.status_reason
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the order stayed PENDING for 30 s".into())
}
