//! A payment provider outage under traffic: the breaker opens, the provider
//! is spared while it is open, nothing is dead-lettered, every order
//! completes once the provider is back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ordo_proto::processor::v1::ListDeadLettersRequest;
use ordo_resilience::{BreakerConfig, BreakerState};
use tokio::time::Instant;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestProcessor, authorized, health_of};

const ORDERS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_payments_outage_opens_the_breaker_and_every_order_completes_after() {
    let processor = Arc::new(
        TestProcessor::spawn_with(|mut settings| {
            settings.payments.breaker = BreakerConfig {
                window: Duration::from_secs(2),
                buckets: 4,
                min_calls: 10,
                failure_rate: 0.5,
                cool_down: Duration::from_secs(1),
                half_open_probes: 2,
            };
            settings.consuming.concurrency = 8;
            settings.health_probe_interval = Duration::from_millis(50);
            settings
        })
        .await,
    );
    let breaker = Arc::clone(&processor.payments_breaker);

    // While the breaker is open the simulator must see no call: sample its
    // count 100 ms after each opening and 100 ms before the cool-down ends.
    let seen = Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
    let watcher = {
        let processor = Arc::clone(&processor);
        let breaker = Arc::clone(&breaker);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut states = breaker.watch();
            while states.changed().await.is_ok() {
                if *states.borrow_and_update() != BreakerState::Open {
                    continue;
                }
                let opened = Instant::now();
                tokio::time::sleep_until(opened + Duration::from_millis(100)).await;
                let early = processor.payments.calls_received().await;
                let health = health_of(processor.addr, "ordo.deps.payments").await;
                tokio::time::sleep_until(opened + Duration::from_millis(850)).await;
                let late = processor.payments.calls_received().await;
                let mut seen = seen.lock().unwrap();
                seen.0.push((early, late));
                seen.1.push(health);
            }
        })
    };

    let publisher = {
        let processor = Arc::clone(&processor);
        tokio::spawn(async move {
            let mut orders = Vec::with_capacity(ORDERS);
            for n in 0..ORDERS {
                let order_id = Uuid::now_v7();
                processor.publish_placed(order_id, 1_000 + n as i64).await;
                orders.push(order_id);
                tokio::time::sleep(Duration::from_millis(28)).await;
            }
            orders
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    processor.payments.set_faults(0.0, true).await;
    let outage = Instant::now();
    let opened_within = loop {
        if breaker.state() == BreakerState::Open {
            break outage.elapsed();
        }
        assert!(
            outage.elapsed() < Duration::from_secs(5),
            "the breaker never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep_until(outage + Duration::from_secs(10)).await;
    processor.payments.set_faults(0.0, false).await;

    let orders = publisher.await.unwrap();
    ordo_testkit::eventually("every order confirmed", Duration::from_secs(60), || async {
        processor
            .count("SELECT count(*) FROM order_processing WHERE state = 'confirmed'")
            .await
            == ORDERS as i64
    })
    .await;
    ordo_testkit::eventually(
        "ordo.deps.payments SERVING again",
        Duration::from_secs(10),
        || async {
            health_of(processor.addr, "ordo.deps.payments").await == Some(ServingStatus::Serving)
        },
    )
    .await;

    // The breaker opened within the window plus its first bucket of the outage.
    assert!(
        opened_within <= Duration::from_millis(2600),
        "opened after {opened_within:?}"
    );
    assert!(breaker.openings() >= 1);
    assert!(
        processor.breaker_deferrals.load(Ordering::Relaxed) > 0,
        "messages were deferred"
    );
    for order_id in orders.iter().step_by(25) {
        let counts = processor.payments.counts(*order_id).await;
        assert_eq!(
            (counts.authorizations, counts.approvals),
            (1, 1),
            "order {order_id}"
        );
    }
    let dead = processor
        .client
        .clone()
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert!(
        dead.is_empty(),
        "nothing is dead-lettered because of an outage: {dead:?}"
    );
    assert_eq!(
        processor
            .count("SELECT count(*) FROM order_processing WHERE attempts >= 5")
            .await,
        0
    );

    watcher.abort();
    let _ = watcher.await;
    let (open_periods, health) = seen.lock().unwrap().clone();
    assert!(!open_periods.is_empty());
    for (early, late) in &open_periods {
        assert_eq!(
            early, late,
            "the simulator received calls while the breaker was open"
        );
    }
    assert!(
        health.contains(&Some(ServingStatus::NotServing)),
        "health showed ordo.deps.payments NOT_SERVING while open: {health:?}"
    );
    Arc::try_unwrap(processor)
        .ok()
        .unwrap()
        .stop()
        .await
        .unwrap();
}
