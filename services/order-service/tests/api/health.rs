//! grpc.health.v1 follows the database: NOT_SERVING while it is unreachable,
//! SERVING again when it returns; requests meanwhile fail UNAVAILABLE and
//! write nothing.

use std::time::Duration;

use ordo_testkit::{TcpProxy, TestDatabase, eventually};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{TestApp, health_of, valid_request};

async fn all_report(addr: std::net::SocketAddr, expected: ServingStatus) -> bool {
    for service in ["", "ordo.order.v1.OrderService"] {
        if health_of(addr, service).await != Some(expected) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn health_follows_the_database() {
    let database = TestDatabase::create().await.unwrap();
    let proxy = TcpProxy::start(database.server_addr().unwrap())
        .await
        .unwrap();
    let url = database.url_via(proxy.addr());
    let mut app = TestApp::spawn_on(database, url, |mut settings| {
        settings.health_probe_interval = Duration::from_millis(100);
        settings.outbox_relay = false;
        settings
    })
    .await;
    let addr = app.addr;
    let deadline = Duration::from_secs(10);

    eventually("SERVING at start", deadline, || {
        all_report(addr, ServingStatus::Serving)
    })
    .await;

    proxy.cut();
    eventually("NOT_SERVING after the cut", deadline, || {
        all_report(addr, ServingStatus::NotServing)
    })
    .await;
    let status = app.client.place_order(valid_request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(app.written().await, [0, 0, 0, 0]);

    proxy.restore();
    eventually("SERVING after restore", deadline, || {
        all_report(addr, ServingStatus::Serving)
    })
    .await;
    // A pooled connection the cut broke fails its first use (UNAVAILABLE,
    // nothing written); the pool then replaces it.
    let mut client = app.client.clone();
    let mut refused = 0;
    while let Err(status) = client.place_order(valid_request()).await {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        refused += 1;
        assert!(refused < 10, "the pool did not recover: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.written().await, [1, 2, 0, 1]);
}
