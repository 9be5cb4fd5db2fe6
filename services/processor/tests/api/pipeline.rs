//! The whole loop — order service, its relay, the processor, the payment
//! simulator, the processor's relay, the order service's status consumer —
//! under payment failures, with group commit's defaults and with every
//! hop's linger on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use ordo_service_kit::group_commit::GroupCommitConfig;
use ordo_testkit::{TestDatabase, TestStream};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use crate::helpers::TestProcessor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_orders_at_thirty_percent_payment_errors_each_settle_exactly_once() {
    every_order_settles_exactly_once(2_000, Duration::ZERO).await;
}

/// With a linger on every group commit (placements, settlements, verdicts)
/// batches are cut later; what each batch writes, and what each order ends
/// as, must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_hop_lingering_each_order_still_settles_exactly_once() {
    let batches = every_order_settles_exactly_once(600, Duration::from_millis(5)).await;
    assert!(
        batches
            .iter()
            .all(|&(transactions, requests)| requests > transactions),
        "every hop wrote several requests in some transaction: {batches:?}"
    );
}

/// `count` orders through the whole loop, with `linger` as both services'
/// group-commit linger; (transactions, requests) of the placements, the
/// verdicts and the settlements.
async fn every_order_settles_exactly_once(count: usize, linger: Duration) -> Vec<(f64, f64)> {
    let stream = TestStream::new().await;
    let stream_settings =
        ordo_outbox::StreamSettings::isolated(&stream.name, &stream.subject_prefix);
    let processor = TestProcessor::spawn_on(
        TestStream {
            name: stream.name.clone(),
            subject_prefix: stream.subject_prefix.clone(),
        },
        stream_settings.clone(),
        |mut settings| {
            settings.consuming.settle_batch.linger = linger;
            settings
        },
    )
    .await;
    processor.payments.set_faults(0.3, false).await;

    let orders_db = TestDatabase::create().await.unwrap();
    let defaults = order_service::Settings::default();
    let order_service = order_service::Application::build(order_service::Settings {
        database_url: orders_db.url().to_owned(),
        database_max_connections: 8,
        grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
        relay: ordo_outbox::RelayConfig {
            nats_url: processor.nats_url.clone(),
            stream: stream_settings,
            poll_interval: Duration::from_millis(100),
            ..defaults.relay.clone()
        },
        group_commit: GroupCommitConfig {
            linger,
            ..defaults.group_commit
        },
        status_settle_batch: GroupCommitConfig {
            linger,
            ..defaults.status_settle_batch
        },
        ..defaults
    })
    .await
    .unwrap();
    let addr = order_service.local_addr();
    let metrics_addr = order_service.metrics_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(order_service.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = OrderServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Every tenth order is above the simulator's decline limit.
    let placed: Vec<(Uuid, bool)> = futures::stream::iter(0..count)
        .map(|n| {
            let mut client = client.clone();
            async move {
                let declined = n % 10 == 0;
                let price = if declined {
                    2_000_000
                } else {
                    1_000 + n as i64
                };
                let order = client
                    .place_order(PlaceOrderRequest {
                        customer_id: format!("c-{n}"),
                        lines: vec![OrderLine {
                            sku: "sku-1".into(),
                            quantity: 1,
                            unit_price_minor: price,
                        }],
                        currency: "EUR".into(),
                        idempotency_key: format!("k-{n}"),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .order
                    .unwrap();
                (Uuid::parse_str(&order.order_id).unwrap(), declined)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(placed.len(), count);

    let orders = orders_db.connect().await.unwrap();
    let pending = || async {
        let row = orders
            .query_one_raw(Statement::from_string(
                orders.get_database_backend(),
                "SELECT count(*) FROM orders WHERE status = 'PENDING'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    ordo_testkit::eventually("every order terminal", Duration::from_secs(240), || async {
        pending().await == 0
    })
    .await;

    let statuses: BTreeMap<Uuid, String> = orders
        .query_all_raw(Statement::from_string(
            orders.get_database_backend(),
            "SELECT id, status FROM orders",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "id").unwrap(),
                row.try_get("", "status").unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), count);
    let mut confirmed = 0;
    for (order_id, declined) in &placed {
        let status = &statuses[order_id];
        let counts = processor.payments.counts(*order_id).await;
        if *declined {
            assert_eq!(status, "REJECTED", "order {order_id}");
            assert_eq!(counts.approvals, 0, "order {order_id}");
        } else {
            assert_eq!(status, "CONFIRMED", "order {order_id}");
            assert_eq!(
                (counts.authorizations, counts.approvals),
                (1, 1),
                "order {order_id}"
            );
            confirmed += 1;
        }
    }
    assert_eq!(confirmed, count - count / 10);

    // No order was both confirmed and rejected, and no verdict came twice.
    let mut verdicts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut verdict_count = 0;
    for kind in ["confirmed", "rejected"] {
        for message in processor.emitted(kind).await {
            let order = message.header("ce-subject").unwrap_or_default().to_owned();
            verdicts.entry(order).or_default().insert(kind.to_owned());
            verdict_count += 1;
        }
    }
    assert_eq!(verdict_count, count);
    assert!(verdicts.values().all(|kinds| kinds.len() == 1));
    let ignored = orders
        .query_one_raw(Statement::from_string(
            orders.get_database_backend(),
            "SELECT count(*) FROM inbox WHERE outcome LIKE 'ignored%'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(ignored, 0);

    let mut batches = Vec::new();
    for (addr, request) in [
        (metrics_addr, "place_order"),
        (metrics_addr, "status"),
        (processor.metrics_addr, "settle"),
    ] {
        let scrape = crate::helpers::scrape(addr).await;
        let labels = [("request", request)];
        batches.push((
            ordo_testkit::metric(&scrape, "ordo_group_commit_transactions_total", &labels),
            ordo_testkit::metric(&scrape, "ordo_group_commit_requests_total", &labels),
        ));
    }

    let _ = stop.send(());
    running.await.unwrap().unwrap();
    processor.stop().await.unwrap();
    batches
}
