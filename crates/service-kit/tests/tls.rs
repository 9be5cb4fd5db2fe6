//! The gRPC servers' TLS, end to end over loopback: a real tonic server on
//! a [`GrpcListener`], real clients, certificates made by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ordo_proto::client::{ClientTls, endpoint};
use ordo_service_kit::serving::GrpcListener;
use ordo_service_kit::tls::ServerTls;
use ordo_telemetry::grpc::GrpcMetrics;
use ordo_testkit::certs::{CertFiles, Pki, TestCa, write_files};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const RELOAD: Duration = Duration::from_millis(100);

struct Served {
    url: String,
    metrics: Arc<GrpcMetrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A health server on loopback with `tls`.
async fn serve(tls: &ServerTls) -> Served {
    let metrics = Arc::new(GrpcMetrics::default());
    let listener = GrpcListener::bind("127.0.0.1:0".parse().unwrap(), Some(tls), &metrics)
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().port());
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(listener.incoming(), async {
                let _ = stopped.await;
            }),
    );
    Served {
        url,
        metrics,
        _stop: stop,
    }
}

fn server_tls(server: &CertFiles, client_ca: Option<&TestCa>) -> ServerTls {
    ServerTls {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: client_ca.map(|ca| ca.ca_file().to_owned()),
        reload_interval: RELOAD,
    }
}

fn trusting(ca: &TestCa) -> ClientTls {
    ClientTls {
        ca_file: Some(ca.ca_file().to_owned()),
        ..ClientTls::default()
    }
}

fn presenting(ca: &TestCa, client: &CertFiles) -> ClientTls {
    ClientTls {
        cert_file: Some(client.cert.clone()),
        key_file: Some(client.key.clone()),
        ..trusting(ca)
    }
}

/// One health check over a new connection.
async fn check(url: &str, tls: &ClientTls) -> Result<(), String> {
    let channel = endpoint(url, tls)
        .map_err(|err| err.to_string())?
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|err| format!("{err:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

#[tokio::test]
async fn tls_is_served_to_clients_that_trust_its_ca_and_to_nobody_else() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let server = serve(&server_tls(
        &ca.issue("server", &["127.0.0.1", "localhost"]).unwrap(),
        None,
    ))
    .await;

    check(&server.url, &trusting(&ca)).await.unwrap();
    let other_ca = pki.ca("other").unwrap();
    assert!(check(&server.url, &trusting(&other_ca)).await.is_err());
    assert!(
        check(&server.url, &ClientTls::default()).await.is_err(),
        "the public roots do not vouch for a private CA"
    );
    let plaintext = server.url.replace("https://", "http://");
    assert!(
        check(&plaintext, &ClientTls::default()).await.is_err(),
        "plaintext is refused once TLS is configured"
    );
    let wrong_name = ClientTls {
        server_name: Some("orders.example".into()),
        ..trusting(&ca)
    };
    assert!(
        check(&server.url, &wrong_name).await.is_err(),
        "the server name is checked"
    );
    assert!(
        server
            .metrics
            .tls
            .handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let clients = pki.ca("clients").unwrap();
    let server = serve(&server_tls(
        &ca.issue("server", &["127.0.0.1"]).unwrap(),
        Some(&clients),
    ))
    .await;

    let client = clients.issue("client", &["ordo-client"]).unwrap();
    check(&server.url, &presenting(&ca, &client)).await.unwrap();
    assert!(
        check(&server.url, &trusting(&ca)).await.is_err(),
        "no client certificate"
    );
    let stranger = pki
        .ca("stranger")
        .unwrap()
        .issue("stranger", &["x"])
        .unwrap();
    assert!(
        check(&server.url, &presenting(&ca, &stranger))
            .await
            .is_err(),
        "a certificate from another CA"
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_while_open_connections_carry_on() {
    let pki = Pki::new().unwrap();
    let (old_ca, new_ca) = (pki.ca("old").unwrap(), pki.ca("new").unwrap());
    let files = old_ca.issue("server", &["127.0.0.1"]).unwrap();
    let server = serve(&server_tls(&files, None)).await;

    // A connection opened before the change, trusting only the old CA.
    let open = endpoint(&server.url, &trusting(&old_ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut open = HealthClient::new(open);
    open.check(HealthCheckRequest::default()).await.unwrap();

    let (cert, key) = new_ca.issue_pem("server", &["127.0.0.1"]).unwrap();
    write_files(&files, &cert, &key).unwrap();
    ordo_testkit::eventually(
        "new connections get the new certificate",
        Duration::from_secs(10),
        || async { check(&server.url, &trusting(&new_ca)).await.is_ok() },
    )
    .await;
    assert!(
        check(&server.url, &trusting(&old_ca)).await.is_err(),
        "new connections no longer get the old certificate"
    );
    // Only the connection opened before can still pass the old CA's check:
    // it was not dropped.
    open.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(
        server
            .metrics
            .tls
            .reloads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn files_that_do_not_load_leave_the_last_good_certificate_in_use() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let files = ca.issue("server", &["127.0.0.1"]).unwrap();
    let server = serve(&server_tls(&files, None)).await;

    // A rotation caught half way: the certificate replaced, the key not yet.
    let (cert, _) = ca.issue_pem("server", &["127.0.0.1"]).unwrap();
    std::fs::write(&files.cert, cert).unwrap();
    ordo_testkit::eventually("the mismatch noticed", Duration::from_secs(10), || async {
        server
            .metrics
            .tls
            .reload_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    check(&server.url, &trusting(&ca)).await.unwrap();
    std::fs::write(&files.cert, "not a certificate").unwrap();
    tokio::time::sleep(RELOAD * 3).await;
    check(&server.url, &trusting(&ca)).await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_holds_up_nobody() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let server = serve(&server_tls(
        &ca.issue("server", &["127.0.0.1"]).unwrap(),
        None,
    ))
    .await;
    let addr = server.url.trim_start_matches("https://").to_owned();
    let _silent: Vec<tokio::net::TcpStream> =
        futures::future::join_all((0..20).map(|_| tokio::net::TcpStream::connect(addr.clone())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    tokio::time::timeout(Duration::from_secs(5), check(&server.url, &trusting(&ca)))
        .await
        .expect("served while 20 silent clients hold their connections")
        .unwrap();
}

#[tokio::test]
async fn a_tcp_probe_is_not_a_failed_handshake_and_plaintext_is() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let server = serve(&server_tls(
        &ca.issue("server", &["127.0.0.1"]).unwrap(),
        None,
    ))
    .await;
    let addr = server.url.trim_start_matches("https://").to_owned();
    let failures = || {
        server
            .metrics
            .tls
            .handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for _ in 0..5 {
        drop(tokio::net::TcpStream::connect(addr.clone()).await.unwrap());
    }
    check(&server.url, &trusting(&ca)).await.unwrap();
    assert_eq!(failures(), 0, "connect-and-close probes are not counted");
    assert!(
        check(&server.url.replace("https", "http"), &ClientTls::default())
            .await
            .is_err()
    );
    ordo_testkit::eventually(
        "the plaintext client counted",
        Duration::from_secs(5),
        || async { failures() == 1 },
    )
    .await;
}

#[tokio::test]
async fn files_that_cannot_be_used_stop_the_start_naming_the_settings() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ordo").unwrap();
    let files = ca.issue("server", &["127.0.0.1"]).unwrap();
    let swapped = ServerTls {
        cert_file: files.key.clone(),
        key_file: files.cert.clone(),
        client_ca_file: None,
        reload_interval: RELOAD,
    };
    let err = GrpcListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        Some(&swapped),
        &Arc::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("GRPC_TLS_CERT_FILE"), "{err}");
}
