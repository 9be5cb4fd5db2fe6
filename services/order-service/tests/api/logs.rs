//! With `LOG_FORMAT=json` the service writes one JSON object per line, and
//! the lines logged while handling a request carry its correlation id.

use std::process::Stdio;
use std::time::Duration;

use ordo_proto::OrderServiceClient;
use ordo_testkit::TestDatabase;
use tokio::io::AsyncReadExt as _;

use crate::helpers::valid_request;

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_correlation_id() {
    let database = TestDatabase::create().await.unwrap();
    let port = ordo_testkit::free_port().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env("GRPC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database.url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("METRICS_LISTEN_ADDR", "off")
        .env("OUTBOX_RELAY", "false")
        .env("STATUS_CONSUMER", "false")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut client = None;
    for _ in 0..100 {
        if let Ok(connected) = OrderServiceClient::connect(format!("http://127.0.0.1:{port}")).await
        {
            client = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("the service came up");
    let mut request = tonic::Request::new(valid_request());
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-json-7".parse().unwrap());
    client.place_order(request).await.unwrap();

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit {status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    assert!(lines.iter().all(serde_json::Value::is_object));
    let placed = lines
        .iter()
        .find(|line| line["message"] == "order placed")
        .unwrap_or_else(|| panic!("no 'order placed' line in {stderr}"));
    assert_eq!(placed["span"]["correlation_id"], "corr-json-7", "{placed}");
    assert!(placed["order_id"].is_string());
}
